//! Values between the plugin and the driver: parameters typed by what the server expects,
//! rows read by their columns' types, every result counted against the memory grant.

use std::error::Error as StdError;

use bytes::BytesMut;
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::bindings::stateplug::backend::postgres::Value;

/// A plugin's parameter, converted to the type the server inferred for its placeholder.
#[derive(Debug)]
pub(super) struct Param<'a>(pub(super) &'a Value);

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Boolean(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::Int64(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Value::Int64(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int64(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Float64(f) if *ty == Type::FLOAT8 => f.to_sql(ty, out),
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Binary(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            other => Err(format!(
                "a {} value cannot be passed where the statement expects `{ty}`; cast the \
                 placeholder in the statement (e.g. `$1::{}`)",
                kind(other),
                sql_type_for(other)
            )
            .into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true // checked per value in `to_sql`, where the error can say what did not fit
    }

    to_sql_checked!();
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int64(_) => "int64",
        Value::Float64(_) => "float64",
        Value::Text(_) => "text",
        Value::Binary(_) => "binary",
    }
}

fn sql_type_for(value: &Value) -> &'static str {
    match value {
        Value::Null | Value::Text(_) => "text",
        Value::Boolean(_) => "boolean",
        Value::Int64(_) => "bigint",
        Value::Float64(_) => "float8",
        Value::Binary(_) => "bytea",
    }
}

/// Bytes a value is counted as against the memory grant: its data plus the variant's size.
pub(super) fn size(value: &Value) -> usize {
    let data = match value {
        Value::Text(s) => s.len(),
        Value::Binary(b) => b.len(),
        _ => 0,
    };
    data + size_of::<Value>()
}

/// One row's values, by the types of its columns.
pub(super) fn row_values(row: &Row) -> Result<Vec<Value>, String> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let bad = |e: tokio_postgres::Error| format!("column `{}`: {e}", column.name());
        let value = if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(Value::Boolean)
        } else if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)
                .map_err(bad)?
                .map(Value::Int64)
        } else if *ty == Type::INT4 {
            let v = row.try_get::<_, Option<i32>>(i).map_err(bad)?;
            v.map(|v| Value::Int64(v.into()))
        } else if *ty == Type::INT2 {
            let v = row.try_get::<_, Option<i16>>(i).map_err(bad)?;
            v.map(|v| Value::Int64(v.into()))
        } else if *ty == Type::OID {
            let v = row.try_get::<_, Option<u32>>(i).map_err(bad)?;
            v.map(|v| Value::Int64(v.into()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)
                .map_err(bad)?
                .map(Value::Float64)
        } else if *ty == Type::FLOAT4 {
            let v = row.try_get::<_, Option<f32>>(i).map_err(bad)?;
            v.map(|v| Value::Float64(v.into()))
        } else if *ty == Type::BYTEA {
            let v = row.try_get::<_, Option<&[u8]>>(i).map_err(bad)?;
            v.map(|v| Value::Binary(v.to_vec()))
        } else if <&str as tokio_postgres::types::FromSql>::accepts(ty) {
            let v = row.try_get::<_, Option<&str>>(i).map_err(bad)?;
            v.map(|v| Value::Text(v.to_string()))
        } else {
            return Err(format!(
                "column `{}` has type `{ty}`, which the postgres interface does not carry; \
                 cast it in the statement (e.g. `{}::text`)",
                column.name(),
                column.name()
            ));
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(values)
}
