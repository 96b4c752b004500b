# Captures the multipart body conductr-cli 1.2.25 sends for `conduct load` of a bundle with a
# configuration (conduct_load.py `load_v2`: the same `files` list, the same requests_toolbelt
# MultipartEncoder), with a fixed boundary instead of a random one. Run from this directory:
#
#   /tmp/cvenv/bin/python capture.py > load-request.multipart
#
# (any Python with requests_toolbelt 0.x installed will do).
import io
import sys

from requests_toolbelt.multipart.encoder import MultipartEncoder

BUNDLE_DIGEST = "6a1e3b5c9d0f4e2a8b7c6d5e4f3a2b1c00112233445566778899aabbccddeeff"
CONFIG_DIGEST = "0f1e2d3c4b5a69788796a5b4c3d2e1f0ffeeddccbbaa99887766554433221100"

bundle_conf = open("bundle.conf", encoding="utf-8").read()
bundle_conf_overlay = 'name = "visualizer"\ncompatibilityVersion = "2"\n'
# Stand-ins for the zips, with bytes that start like a delimiter and are not one.
bundle = b"PK\x03\x04 the bundle \r\n-- not a delimiter \r\n--2a1f8c3e5b7d9f0e4c6a8b1d3f5e7c9b"
configuration = b"PK\x03\x04 the configuration\r"

files = [("bundleConf", ("bundle.conf", io.StringIO(bundle_conf)))]
files.append(("bundleConfOverlay", ("bundle.conf", io.StringIO(bundle_conf_overlay))))
files.append(("bundle", ("visualizer-{}.zip".format(BUNDLE_DIGEST), io.BytesIO(bundle))))
files.append(("configuration", ("config-{}.zip".format(CONFIG_DIGEST), io.BytesIO(configuration))))

encoder = MultipartEncoder(files, boundary="2a1f8c3e5b7d9f0e4c6a8b1d3f5e7c9a")
body = encoder.to_string()
assert len(body) == encoder.len
assert encoder.content_type == "multipart/form-data; boundary=2a1f8c3e5b7d9f0e4c6a8b1d3f5e7c9a"
sys.stdout.buffer.write(body)
