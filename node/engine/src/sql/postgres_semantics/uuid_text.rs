//! `uuid_text(text)`: a text read as a UUID and written as a UUID column stores it
//! (lower case, hyphenated). PostgreSQL's `uuid_in` accepts upper case, braces and
//! missing hyphens; so does a UUID column on INSERT; so a comparison with a UUID column
//! must, for a parameter bound at execution as for a literal (which
//! `comparable_types` rewrites when the statement is planned).

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The text of `text` as a stored UUID; an error (without the text) if it is none.
pub(super) fn canonical(text: &str) -> Result<String> {
    match uuid::Uuid::try_parse(text) {
        Ok(parsed) => Ok(parsed.hyphenated().to_string()),
        Err(_) => Err(DataFusionError::Plan(
            "invalid input syntax for type uuid".into(),
        )),
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UuidText {
    signature: Signature,
}

pub(super) static UUID_TEXT: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::new_from_impl(UuidText {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
    }))
});

impl ScalarUDFImpl for UuidText {
    fn name(&self) -> &str {
        "uuid_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return exec_err!("uuid_text takes one argument");
        };
        match value {
            ColumnarValue::Scalar(ScalarValue::Utf8(text)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(text.as_deref().map(canonical).transpose()?),
            )),
            ColumnarValue::Array(array) => {
                let Some(texts) = array.as_any().downcast_ref::<StringArray>() else {
                    return exec_err!("uuid_text takes a text");
                };
                let out: StringArray = texts
                    .iter()
                    .map(|t| t.map(canonical).transpose())
                    .collect::<Result<_>>()?;
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            _ => exec_err!("uuid_text takes a text"),
        }
    }
}
