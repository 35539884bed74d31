//! Plugins' SQL values on the wire: parameters bound to the types
//! PostgreSQL inferred for them, and result columns read back.

use bytes::{BufMut, BytesMut};
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::error::SqlError;
use crate::runtime::SqlValue;

/// A parameter converted to the type PostgreSQL inferred for it.
#[derive(Debug)]
pub(super) enum Bound {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Text(String),
    Jsonb(String),
    Bytes(Vec<u8>),
}

pub(super) fn bind(
    index: usize,
    params: &[SqlValue],
    types: &[Type],
) -> Result<Vec<Bound>, SqlError> {
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (value, ty))| {
            let mismatch = |value: &'static str| SqlError::Bind {
                index,
                param: i + 1,
                value,
                expected: ty.name().to_owned(),
            };
            Ok(match value {
                SqlValue::Null => Bound::Null,
                SqlValue::Boolean(b) if *ty == Type::BOOL => Bound::Bool(*b),
                SqlValue::Boolean(_) => return Err(mismatch("boolean")),
                SqlValue::Int(n) => match *ty {
                    Type::INT2 => {
                        Bound::I16(i16::try_from(*n).map_err(|_| mismatch("int out of range"))?)
                    }
                    Type::INT4 | Type::OID => {
                        Bound::I32(i32::try_from(*n).map_err(|_| mismatch("int out of range"))?)
                    }
                    Type::INT8 => Bound::I64(*n),
                    Type::FLOAT8 => Bound::F64(*n as f64),
                    Type::TEXT | Type::VARCHAR => Bound::Text(n.to_string()),
                    _ => return Err(mismatch("int")),
                },
                SqlValue::Float(x) => match *ty {
                    Type::FLOAT4 => Bound::F32(*x as f32),
                    Type::FLOAT8 => Bound::F64(*x),
                    _ => return Err(mismatch("float")),
                },
                SqlValue::Text(s) => match *ty {
                    Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                        Bound::Text(s.clone())
                    }
                    Type::JSON | Type::JSONB => Bound::Jsonb(s.clone()),
                    _ => return Err(mismatch("text")),
                },
                SqlValue::Json(s) => match *ty {
                    Type::JSON | Type::JSONB | Type::TEXT => Bound::Jsonb(s.clone()),
                    _ => return Err(mismatch("json")),
                },
                SqlValue::Bytes(b) if *ty == Type::BYTEA => Bound::Bytes(b.clone()),
                SqlValue::Bytes(_) => return Err(mismatch("bytes")),
            })
        })
        .collect()
}

impl ToSql for Bound {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => return Ok(IsNull::Yes),
            Self::Bool(v) => v.to_sql(ty, out)?,
            Self::I16(v) => v.to_sql(ty, out)?,
            Self::I32(v) if *ty == Type::OID => (*v as u32).to_sql(ty, out)?,
            Self::I32(v) => v.to_sql(ty, out)?,
            Self::I64(v) => v.to_sql(ty, out)?,
            Self::F32(v) => v.to_sql(ty, out)?,
            Self::F64(v) => v.to_sql(ty, out)?,
            Self::Text(v) => {
                out.put_slice(v.as_bytes());
                IsNull::No
            }
            Self::Jsonb(v) => {
                // jsonb's binary format is a version byte followed by the text.
                if *ty == Type::JSONB {
                    out.put_u8(1);
                }
                out.put_slice(v.as_bytes());
                IsNull::No
            }
            Self::Bytes(v) => v.as_slice().to_sql(ty, out)?,
        };
        Ok(IsNull::No)
    }

    // Conversion was checked in `bind` against the prepared statement's types.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Bound values as the parameter list tokio-postgres takes.
pub(super) fn as_params(binds: &[Bound]) -> Vec<&(dyn ToSql + Sync)> {
    binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

pub(super) fn row_values(row: &Row) -> Result<Vec<SqlValue>, SqlError> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            let value = match *ty {
                Type::BOOL => row.get::<_, Option<bool>>(i).map(SqlValue::Boolean),
                Type::INT2 => row
                    .get::<_, Option<i16>>(i)
                    .map(|v| SqlValue::Int(v.into())),
                Type::INT4 => row
                    .get::<_, Option<i32>>(i)
                    .map(|v| SqlValue::Int(v.into())),
                Type::INT8 => row.get::<_, Option<i64>>(i).map(SqlValue::Int),
                Type::OID => row
                    .get::<_, Option<u32>>(i)
                    .map(|v| SqlValue::Int(v.into())),
                Type::FLOAT4 => row
                    .get::<_, Option<f32>>(i)
                    .map(|v| SqlValue::Float(v.into())),
                Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(SqlValue::Float),
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                    row.get::<_, Option<String>>(i).map(SqlValue::Text)
                }
                Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(SqlValue::Bytes),
                Type::JSON | Type::JSONB => row
                    .get::<_, Option<serde_json::Value>>(i)
                    .map(|v| SqlValue::Json(v.to_string())),
                _ => {
                    return Err(SqlError::UnsupportedColumn {
                        column: column.name().to_owned(),
                        ty: ty.name().to_owned(),
                    });
                }
            };
            Ok(value.unwrap_or(SqlValue::Null))
        })
        .collect()
}
