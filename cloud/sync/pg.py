"""The PostgreSQL store: a batch's new rows by COPY, falling back to INSERT ... ON CONFLICT DO NOTHING."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg

from cloud.models import (
    Gateway,
)
from cloud.sync.records import SyncRecord
from cloud.sync.store import (
    DEVICE_CHANGES,
    JSON_COLUMNS,
    KEY_COLUMNS,
    KEYED_COLUMNS,
    LEDGER_COLUMNS,
    TABLES_WITH_GATEWAY,
    DeviceState,
    Store,
)

# The types COPY sends each column as (binary format). A JSON column's value is the document's text, which
# the server's binary input for json takes as it is.
_COPY_TYPE_NAMES = {"json": "text", "boolean": "bool", "bigint": "int8", "integer": "int4"}
_COPY_TYPES: dict[str, dict[str, str]] = {
    table: {
        name: _COPY_TYPE_NAMES.get(sql_type, sql_type)
        for name, sql_type in (
            *KEY_COLUMNS, *columns, ("school_code", "text"), ("received_at", "timestamptz"), ("gateway_id", "text")
        )
    }
    for table, columns in KEYED_COLUMNS.items()
}
_COPY_TYPES["ingested_record"] = {
    name: _COPY_TYPE_NAMES.get(sql_type, sql_type)
    for name, sql_type in (("gateway_id", "text"), ("received_at", "timestamptz"), *LEDGER_COLUMNS)
}


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows as a JSON array of arrays; times as RFC 3339 text with their microseconds."""
    return orjson.dumps(rows).decode()


def _pg_columns(columns: Sequence[tuple[str, str]]) -> str:
    """The select list taking the row array `r` apart: element i as the i-th column's type. A JSON column's
    element is the document's text, which the cast stores as it is."""
    return ", ".join(
        f"r->>{index}" if sql_type == "text" else f"(r->>{index})::{sql_type}"
        for index, (_, sql_type) in enumerate(columns)
    )


def _json(value: Any) -> str:
    # The text SQLAlchemy's JSON type writes, so that what is stored does not depend on the database: None
    # too becomes the JSON null, as that type stores it.
    return json.dumps(value)


class PostgresStore(Store):
    """New rows go in by COPY, which costs the server a fraction of an INSERT per row.

    COPY cannot skip a row whose key is stored already, so it is tried first inside a savepoint, as what a
    batch nearly always is: all new. A batch sent again (its answer was lost, or two copies race), or a
    device record the cloud has under another gseq, makes the COPY fail on a unique key; the savepoint is
    rolled back and the same rows go in by INSERT ... ON CONFLICT DO NOTHING, which skips those.

    The INSERTs take a table's rows as one JSON array of row arrays, taken apart by the server: one
    statement per table and batch, whose text does not change with the batch's size, so that the server
    plans it once per connection."""

    def _execute(self, statement: str, parameters: tuple[Any, ...]):
        return self.session.connection().exec_driver_sql(statement, parameters)

    def _copy(self, statements: Sequence[tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]]) -> bool:
        """COPY the rows of each (table, columns, rows) inside one savepoint; False, with nothing written,
        if a row's unique key is taken."""
        connection = self.session.connection().connection.driver_connection
        assert isinstance(connection, psycopg.Connection)
        with connection.cursor() as cursor:
            cursor.execute("SAVEPOINT sync_copy")
            try:
                for table, columns, rows in statements:
                    if not rows:
                        continue
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                        copy.set_types([_COPY_TYPES[table][column] for column in columns])
                        write = copy.write_row
                        for row in rows:
                            write(row)
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT sync_copy")
                return False
            cursor.execute("RELEASE SAVEPOINT sync_copy")
        return True

    def register_devices(
        self, *, school_code: str, device_ids: Sequence[str], now: datetime
    ) -> dict[str, DeviceState]:
        if not device_ids:
            return {}
        ids = list(device_ids)
        self._execute(
            "INSERT INTO device (id, school_code, presence, first_seen_at) "
            "SELECT id, %s, 'unknown', %s FROM unnest(%b::text[]) AS t(id) ORDER BY id "
            "ON CONFLICT (id) DO NOTHING",
            (school_code, now, ids),
        )
        rows = self._execute(
            "SELECT id, school_code, boot_id, presence, last_seen_at, role FROM device WHERE id = ANY(%b::text[]) "
            "ORDER BY id FOR UPDATE",
            (ids,),
        )
        return {row[0]: DeviceState(*row) for row in rows}

    def claim(self, *, gateway_id: str, records: Sequence[SyncRecord], now: datetime) -> set[int]:
        if not records:
            return set()
        null = _json(None)
        copied = self._copy([(
            "ingested_record",
            ("gateway_id", "received_at", *(name for name, _ in LEDGER_COLUMNS)),
            [
                (gateway_id, now, record.gseq, record.kind, record.device,
                 null if record.device is not None else _json(record.body))
                for record in records
            ],
        )])
        if copied:
            return {record.gseq for record in records}
        rows = [
            (record.gseq, record.kind, record.device, null if record.device is not None else _json(record.body))
            for record in records
        ]
        result = self._execute(
            "INSERT INTO ingested_record (gateway_id, received_at, gateway_seq, kind, device_id, body) "
            f"SELECT %s, %s, {_pg_columns(LEDGER_COLUMNS)} "
            "FROM jsonb_array_elements(%s::jsonb) AS r "
            "ON CONFLICT (gateway_id, gateway_seq) DO NOTHING RETURNING gateway_seq",
            (gateway_id, now, _json_rows(rows)),
        )
        return set(result.scalars().all())

    def insert_all_keyed(
        self, tables: Sequence[tuple[str, Sequence[tuple[Any, ...]]]], *, gateway: Gateway, now: datetime
    ) -> None:
        statements = []
        for table, rows in tables:
            if not rows:
                continue
            columns, constants = self._keyed_columns(table, gateway, now)
            documents = [index for index, (name, _) in enumerate(columns) if name in JSON_COLUMNS]
            if documents:
                rows = [
                    tuple(_json(value) if index in documents else value for index, value in enumerate(row))
                    for row in rows
                ]
            names = [name for name, _ in columns] + list(constants)
            extra = tuple(constants.values())
            statements.append((table, names, [(*row, *extra) for row in rows]))
        if not self._copy(statements):
            super().insert_all_keyed(tables, gateway=gateway, now=now)

    @staticmethod
    def _keyed_columns(
        table: str, gateway: Gateway, now: datetime
    ) -> tuple[tuple[tuple[str, str], ...], dict[str, Any]]:
        constants: dict[str, Any] = {"school_code": gateway.school_code, "received_at": now}
        if table in TABLES_WITH_GATEWAY:
            constants["gateway_id"] = gateway.id
        return (*KEY_COLUMNS, *KEYED_COLUMNS[table]), constants

    def insert_keyed(self, table: str, rows: Sequence[tuple[Any, ...]], *, gateway: Gateway, now: datetime) -> None:
        if not rows:
            return
        columns, constant_values = self._keyed_columns(table, gateway, now)
        documents = [index for index, (name, _) in enumerate(columns) if name in JSON_COLUMNS]
        if documents:
            rows = [
                tuple(_json(value) if index in documents else value for index, value in enumerate(row)) for row in rows
            ]
        constants = list(constant_values)
        self._execute(
            f"INSERT INTO {table} ({', '.join([name for name, _ in columns] + constants)}) "
            f"SELECT {_pg_columns(columns)}, {', '.join(['%s'] * len(constants))} "
            "FROM jsonb_array_elements(%s::jsonb) AS r "
            "ON CONFLICT (device_id, boot_id, seq) DO NOTHING",
            (*constant_values.values(), _json_rows(rows)),
        )

    def update_devices(self, devices: Sequence[DeviceState]) -> None:
        if not devices:
            return
        arrays: list[list[Any]] = [[device.id for device in devices]]
        for name in DEVICE_CHANGES:
            values = [device.changes.get(name) for device in devices]
            if name in JSON_COLUMNS:
                # None here means "unchanged", not a JSON null.
                values = [None if value is None else _json(value) for value in values]
            arrays.append(values)
        types = ("text", "timestamptz", "text", "text", "text", "text", "text", "timestamptz", "json", "bigint")
        names = ("id", *DEVICE_CHANGES)
        assignments = ", ".join(f"{name} = coalesce(t.{name}, device.{name})" for name in DEVICE_CHANGES)
        self._execute(
            f"UPDATE device SET {assignments} "
            f"FROM unnest({', '.join(f'%b::{sql_type}[]' for sql_type in types)}) AS t({', '.join(names)}) "
            "WHERE device.id = t.id",
            tuple(arrays),
        )
