//! Flight's session actions, mapped to the client session `SET domicile.*` changes:
//! `SetSessionOptions`, `GetSessionOptions` and `CloseSession` (Flight.proto, package
//! `arrow.flight.protocol`; the `arrow-flight` crate does not generate them, so the
//! messages are declared here with the specification's field numbers). ADBC sets them
//! with `adbc.flight.sql.session.option.<name>` and closes the session when a
//! connection closes.
//!
//! Bodies are decoded only after their length was checked against
//! `SESSION_ACTION_BODY_MAX_BYTES`.

use std::collections::HashMap;

use prost::Message;

use crate::auth::SessionOptions;
use crate::limits::SESSION_ACTION_BODY_MAX_BYTES;

pub(crate) const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub(crate) const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub(crate) const CLOSE_SESSION: &str = "CloseSession";

/// `SessionOptionValue`: one of a string, a boolean, an int64, a double or a list of
/// strings.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub(crate) option_value: Option<OptionValue>,
}

#[expect(
    clippy::enum_variant_names,
    reason = "the variant names are Flight.proto's field names"
)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum OptionValue {
    #[prost(string, tag = "1")]
    StringValue(String),
    #[prost(bool, tag = "2")]
    BoolValue(bool),
    #[prost(sfixed64, tag = "3")]
    Int64Value(i64),
    #[prost(double, tag = "4")]
    DoubleValue(f64),
    #[prost(message, tag = "5")]
    StringListValue(StringListValue),
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub(crate) values: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) session_options: HashMap<String, SessionOptionValue>,
}

/// `SetSessionOptionsResult.ErrorValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum ErrorValue {
    Unspecified = 0,
    InvalidName = 1,
    InvalidValue = 2,
    Error = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetSessionOptionError {
    #[prost(enumeration = "ErrorValue", tag = "1")]
    pub(crate) value: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) errors: HashMap<String, SetSessionOptionError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) session_options: HashMap<String, SessionOptionValue>,
}

/// `CloseSessionResult.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum CloseStatus {
    Unspecified = 0,
    Closed = 1,
    Closing = 2,
    NotCloseable = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CloseSessionResult {
    #[prost(enumeration = "CloseStatus", tag = "1")]
    pub(crate) status: i32,
}

/// Why a session action's body was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionActionError {
    #[error(
        "session action body of {0} bytes exceeds session_action_body_max_bytes = {SESSION_ACTION_BODY_MAX_BYTES}"
    )]
    TooLarge(usize),
    #[error("malformed {action} body: {detail}")]
    Malformed {
        action: &'static str,
        detail: String,
    },
}

impl crate::error_kind::Classify for SessionActionError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            SessionActionError::TooLarge(_) => crate::error_kind::ErrorKind::Exhausted,
            SessionActionError::Malformed { .. } => crate::error_kind::ErrorKind::Invalid,
        }
    }
}

/// Decodes a SetSessionOptions body, bounded first.
pub(crate) fn decode_set(body: &[u8]) -> Result<SetSessionOptionsRequest, SessionActionError> {
    if body.len() > SESSION_ACTION_BODY_MAX_BYTES {
        return Err(SessionActionError::TooLarge(body.len()));
    }
    SetSessionOptionsRequest::decode(body).map_err(|e| SessionActionError::Malformed {
        action: SET_SESSION_OPTIONS,
        detail: e.to_string(),
    })
}

/// The SQL text of a value, as `SET name = value` would take it.
fn value_text(value: &SessionOptionValue) -> Option<String> {
    match value.option_value.as_ref()? {
        OptionValue::StringValue(text) => Some(text.clone()),
        OptionValue::BoolValue(flag) => Some(flag.to_string()),
        OptionValue::Int64Value(number) => Some(number.to_string()),
        OptionValue::DoubleValue(number) => Some(number.to_string()),
        OptionValue::StringListValue(_) => None,
    }
}

/// Applies every option of `request` that `SET` accepts to `options`; the others are
/// reported by name, with `INVALID_NAME` (unknown option) or `INVALID_VALUE`.
pub(crate) fn apply(
    options: &mut SessionOptions,
    request: &SetSessionOptionsRequest,
) -> SetSessionOptionsResult {
    let mut errors = HashMap::new();
    for (name, value) in &request.session_options {
        let refused = match value_text(value) {
            None => Some(ErrorValue::InvalidValue),
            Some(text) => {
                let mut probe = SessionOptions::default();
                match probe.set(name, &text) {
                    Ok(()) => options.set(name, &text).err().map(|_| ErrorValue::Error),
                    Err(_) if !name.eq_ignore_ascii_case(SessionOptions::MESH_PARTIAL_RESULTS) => {
                        Some(ErrorValue::InvalidName)
                    }
                    Err(_) => Some(ErrorValue::InvalidValue),
                }
            }
        };
        if let Some(refused) = refused {
            errors.insert(
                name.clone(),
                SetSessionOptionError {
                    value: refused as i32,
                },
            );
        }
    }
    SetSessionOptionsResult { errors }
}

/// The session's options as GetSessionOptions reports them.
pub(crate) fn current(options: &SessionOptions) -> GetSessionOptionsResult {
    let mut session_options = HashMap::new();
    session_options.insert(
        SessionOptions::MESH_PARTIAL_RESULTS.to_string(),
        SessionOptionValue {
            option_value: Some(OptionValue::BoolValue(options.mesh_partial_results)),
        },
    );
    GetSessionOptionsResult { session_options }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, OptionValue)]) -> SetSessionOptionsRequest {
        SetSessionOptionsRequest {
            session_options: pairs
                .iter()
                .map(|(name, value)| {
                    (
                        (*name).to_string(),
                        SessionOptionValue {
                            option_value: Some(value.clone()),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn known_options_apply_and_the_rest_are_reported_by_name() {
        let mut options = SessionOptions::default();
        let result = apply(
            &mut options,
            &request(&[
                (
                    "domicile.mesh_partial_results",
                    OptionValue::BoolValue(true),
                ),
                ("search_path", OptionValue::StringValue("x".into())),
            ]),
        );
        assert!(options.mesh_partial_results);
        assert_eq!(result.errors.len(), 1);
        assert_eq!(
            result.errors["search_path"].value,
            ErrorValue::InvalidName as i32
        );
        let result = apply(
            &mut options,
            &request(&[(
                "domicile.mesh_partial_results",
                OptionValue::StringValue("perhaps".into()),
            )]),
        );
        assert_eq!(
            result.errors["domicile.mesh_partial_results"].value,
            ErrorValue::InvalidValue as i32
        );
        assert!(
            options.mesh_partial_results,
            "a refused value changes nothing"
        );
        let reported = current(&options);
        assert_eq!(
            reported.session_options["domicile.mesh_partial_results"].option_value,
            Some(OptionValue::BoolValue(true))
        );
    }

    #[test]
    fn bodies_are_bounded_before_decoding_and_garbage_is_refused() {
        let huge = vec![0u8; SESSION_ACTION_BODY_MAX_BYTES + 1];
        assert!(matches!(
            decode_set(&huge),
            Err(SessionActionError::TooLarge(_))
        ));
        assert!(matches!(
            decode_set(&[0xFF, 0xFF, 0xFF]),
            Err(SessionActionError::Malformed { .. })
        ));
        let round = request(&[("a", OptionValue::Int64Value(7))]);
        assert_eq!(decode_set(&round.encode_to_vec()).expect("decodes"), round);
    }
}
