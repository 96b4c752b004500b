"""`conduct deploy --webhook bintray` of the official conductr-cli, against `lockstep serve`.

Bintray is long gone and this machine has no internet: the one thing replaced is the client's
resolution of the bundle through Bintray's API, which answers with the version given here. The
webhook the client sends (JSON body, X-Bintray-Hook-Hmac) and the way it follows the deployment
(the event stream, GET /deployments/{id}) are the client's own.

Usage: conductr_deploy.py IP PORT TAG DIGEST [conduct deploy options...]
"""
import sys

from conductr_cli import conduct_main, resolver

ip, port, tag, digest, *options = sys.argv[1:]


def resolve_bundle_version(custom_settings, uri, offline_mode=False):
    return {
        "resolver": "conductr_cli.resolvers.bintray_resolver",
        "org": "typesafe",
        "repo": "bundle",
        "package_name": "visualizer",
        "tag": tag,
        "digest": digest,
    }


resolver.resolve_bundle_version = resolve_bundle_version
conduct_main.run(["deploy", "--webhook", "bintray", "-y", "--api-version", "2", "--ip", ip,
                  "--port", port, *options, "visualizer"])
