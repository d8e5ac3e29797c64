"""What PostgreSQL supports, for SQLAlchemy's dialect compliance suite run against
``postgresql+floe_psycopg``: SQLAlchemy's own suite requirements with PostgreSQL's features opened."""

from __future__ import annotations

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements

_OPEN = [
    "create_table",
    "index_ddl_if_exists",
    "uuid_data_type",
    "foreign_keys",
    "unique_constraints_reflect_as_index",
    "table_value_constructor",
    "standard_cursor_sql",
    "deferrable_fks",
    "queue_pool",
    "foreign_key_ddl",
    "nullable_booleans",
    "standalone_binds",
    "except_",
    "window_functions",
    "ctes",
    "ctes_with_update_delete",
    "ctes_with_values",
    "ctes_on_dml",
    "autoincrement_insert",
    "views",
    "schemas",
    "foreign_key_constraint_name_reflection",
    "implicit_default_schema",
    "server_side_cursors",
    "comment_reflection",
    "comment_reflection_full_unicode",
    "constraint_comment_reflection",
    "column_collation_reflection",
    "view_column_reflection",
    "foreign_key_constraint_option_reflection_ondelete",
    "fk_constraint_option_reflection_ondelete_restrict",
    "fk_constraint_option_reflection_ondelete_noaction",
    "foreign_key_constraint_option_reflection_onupdate",
    "fk_constraint_option_reflection_onupdate_restrict",
    "temp_table_names",
    "has_temp_table",
    "temporary_tables",
    "index_reflects_included_columns",
    "indexes_with_ascdesc",
    "indexes_check_column_order",
    "indexes_with_expressions",
    "reflect_indexes_with_expressions",
    "unique_constraint_reflection",
    "check_constraint_reflection",
    "duplicate_key_raises_integrity_error",
    "symbol_names_w_double_quote",
    "datetime",
    "time_timezone",
    "date_implicit_bound",
    "timestamp_microseconds_implicit_bound",
    "date",
    "time",
    "isolation_level",
    "get_isolation_level_values",
    "json_type",
    "json_array_indexes",
    "precision_numerics_general",
    "expression_server_defaults",
    "implicit_decimal_binds",
    "infinity_floats",
    "precision_generic_float_type",
    "update_from",
    "delete_from",
    "update_where_target_in_subquery",
    "order_by_col_from_union",
    "unicode_connections",
    "computed_columns_default_persisted",
    "computed_columns_reflect_persisted",
    "supports_distinct_on",
    "supports_is_distinct_from",
    "identity_columns_standard",
    "regexp_match",
    "regexp_replace",
    "fetch_first",
    "fetch_ties",
    "fetch_no_order_by",
    "fetch_offset_with_options",
    "fetch_expression",
    "autoincrement_without_sequence",
    "materialized_views",
    "supports_bitwise_or",
    "supports_bitwise_and",
    "supports_bitwise_not",
    "supports_bitwise_xor",
    "supports_bitwise_shift",
    "json_deserializer_binary",
]


class Requirements(SuiteRequirements):
    """SQLAlchemy's suite requirements, with what PostgreSQL 15 through psycopg 3 supports."""

    def get_isolation_levels(self, config: object) -> dict[str, object]:
        return {
            "default": "READ COMMITTED",
            "supported": [
                "AUTOCOMMIT",
                "READ COMMITTED",
                "READ UNCOMMITTED",
                "REPEATABLE READ",
                "SERIALIZABLE",
            ],
        }


for _name in _OPEN:
    setattr(Requirements, _name, property(lambda self: exclusions.open()))
