"""On PostgreSQL the sign-in log becomes a table partitioned by day on ``at``, keeping its rows (docs/design.md,
"The sign-in log at volume"). SQLite keeps its plain table.

Django has no partitioned tables, so this is done by hand: the old table is renamed, a partitioned table with the
same columns takes its name, a partition is created for every day that has rows and for the next week, with a
default partition for anything else, the rows are copied, the old table is dropped, and the primary key, indexes
and foreign keys are created again under their old names. A partitioned table's primary key must include the
partition key, so the database's key is ``(id, at)``; Django keeps ``id`` as the model's primary key (ids still
come from one identity sequence, so they stay unique). No table has a foreign key to the sign-in log (one could not
point at a partitioned table's ``id`` alone).

The code here is frozen on purpose (a migration must not change when the app's code does); the daily job
``maintain_sign_in_partitions`` (``governance.signin.partitions``) keeps creating days ahead and dropping old ones.
"""

from datetime import UTC, datetime, timedelta

from django.db import migrations

TABLE = "signin_signin"
OLD = "signin_signin_unpartitioned"
AHEAD_DAYS = 7


def _partition(day) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def partition(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [TABLE])
        if cursor.fetchone() == ("p",):
            return  # already partitioned
        # The old constraints' and indexes' names, to give them to the new table's.
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND contype = 'f'", [TABLE])
        foreign_keys = cursor.fetchall()
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [TABLE])
        primary_key = cursor.fetchone()[0]
        cursor.execute("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                       "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
                       "AND NOT x.indisprimary", [TABLE])
        indexes = cursor.fetchall()

        cursor.execute(f'ALTER TABLE "{TABLE}" RENAME TO "{OLD}"')
        cursor.execute(f'CREATE TABLE "{TABLE}" (LIKE "{OLD}" INCLUDING DEFAULTS INCLUDING IDENTITY '
                       f"INCLUDING STORAGE) PARTITION BY RANGE (at)")
        cursor.execute(f"SELECT DISTINCT (at AT TIME ZONE 'UTC')::date FROM \"{OLD}\"")
        days = {row[0] for row in cursor.fetchall()}
        today = datetime.now(UTC).date()
        days |= {today + timedelta(days=i) for i in range(AHEAD_DAYS + 1)}
        for day in sorted(days):
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            cursor.execute(f'CREATE TABLE "{_partition(day)}" PARTITION OF "{TABLE}" FOR VALUES FROM '
                           f"('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}')")
        cursor.execute(f'CREATE TABLE "{TABLE}_default" PARTITION OF "{TABLE}" DEFAULT')
        cursor.execute(f'INSERT INTO "{TABLE}" SELECT * FROM "{OLD}"')
        cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                       f'COALESCE((SELECT MAX(id) FROM "{OLD}"), 0) + 1, false)', [TABLE])
        cursor.execute(f'DROP TABLE "{OLD}"')
        cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{primary_key}" PRIMARY KEY (id, at)')
        for _name, definition in indexes:  # read before the rename: they name the new table
            cursor.execute(definition)
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{name}" {definition}')


def unpartition(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [TABLE])
        if cursor.fetchone() != ("p",):
            return
        cursor.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = %s::regclass AND contype = 'f'", [TABLE])
        foreign_keys = cursor.fetchall()
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", [TABLE])
        primary_key = cursor.fetchone()[0]
        cursor.execute("SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
                       "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
                       "AND NOT x.indisprimary", [TABLE])
        indexes = cursor.fetchall()
        cursor.execute(f'ALTER TABLE "{TABLE}" RENAME TO "{OLD}"')
        cursor.execute(f'CREATE TABLE "{TABLE}" (LIKE "{OLD}" INCLUDING DEFAULTS INCLUDING IDENTITY '
                       f"INCLUDING STORAGE)")
        cursor.execute(f'INSERT INTO "{TABLE}" SELECT * FROM "{OLD}"')
        cursor.execute(f"SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                       f'COALESCE((SELECT MAX(id) FROM "{OLD}"), 0) + 1, false)', [TABLE])
        cursor.execute(f'DROP TABLE "{OLD}" CASCADE')
        cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{primary_key}" PRIMARY KEY (id)')
        for _name, definition in indexes:
            cursor.execute(definition.replace(" ON ONLY ", " ON "))
        for name, definition in foreign_keys:
            cursor.execute(f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{name}" {definition}')


class Migration(migrations.Migration):

    dependencies = [
        ('signin', '0005_sign_in_credential_type'),
    ]

    operations = [
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
