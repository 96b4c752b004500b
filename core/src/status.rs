//! The HTTP statuses lockstep answers (docs/PROTOCOL.md §7), so that every error of core can say
//! which one it is without core speaking HTTP.

use core::fmt;

/// An HTTP status lockstep uses. Each error type of core maps its variants to one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Status {
    /// 200: a read answered.
    Ok,
    /// 202: a webhook accepted (a new deployment or a redelivery).
    Accepted,
    /// 400: malformed request: path segment, JSON, UTF-8, fields, nesting.
    BadRequest,
    /// 401: no signature of an accepted scheme, or a malformed one.
    Unauthorized,
    /// 403: a signature that does not verify, is stale or replayed; a package not allowed.
    Forbidden,
    /// 404: unknown path or deployment.
    NotFound,
    /// 405: known path, wrong method.
    MethodNotAllowed,
    /// 408: the request was not read in time.
    RequestTimeout,
    /// 409: a webhook for a version whose last deployment failed, without `retry`.
    Conflict,
    /// 411: no Content-Length, or a chunked request body.
    LengthRequired,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 415: a media type other than `application/json`.
    UnsupportedMediaType,
    /// 422: well-formed but meaningless (a version without digest, an invalid package name).
    UnprocessableEntity,
    /// 431: request head over the limit.
    RequestHeaderFieldsTooLarge,
    /// 503: full, or shutting down; comes with `Retry-After`.
    ServiceUnavailable,
}

impl Status {
    /// The numeric code.
    pub const fn code(self) -> u16 {
        match self {
            Self::Ok => 200,
            Self::Accepted => 202,
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::Conflict => 409,
            Self::LengthRequired => 411,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::UnprocessableEntity => 422,
            Self::RequestHeaderFieldsTooLarge => 431,
            Self::ServiceUnavailable => 503,
        }
    }

    /// The standard reason phrase.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Accepted => "Accepted",
            Self::BadRequest => "Bad Request",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::RequestTimeout => "Request Timeout",
            Self::Conflict => "Conflict",
            Self::LengthRequired => "Length Required",
            Self::PayloadTooLarge => "Payload Too Large",
            Self::UnsupportedMediaType => "Unsupported Media Type",
            Self::UnprocessableEntity => "Unprocessable Entity",
            Self::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Self::ServiceUnavailable => "Service Unavailable",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}
