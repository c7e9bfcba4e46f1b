"""Run neutron-server (neutron.cmd.eventlet.server.main, the code behind
Debian's neutron-server script, which python3-neutron lacks) on a sqlite
file for test_agent_rabbit.py.

Usage: python -m networking_vswitch.tests.functional.neutron_server
--config-file neutron.conf

The schema comes from neutron's models (create_all, as neutron's own unit
tests do), which takes 3 s where the alembic migrations take minutes.
neutron-server always forks its RPC worker, so the API process and the RPC
worker write the same sqlite file. sqlite answers "database is locked" at
once, without waiting, when a reader tries to write after another process
wrote; neutron retries deadlocks but not that error. So here the file runs
in WAL mode with a busy timeout, and that error counts as a deadlock
(oslo.db's DBDeadlock), which neutron's DB API retries.
"""
from neutron.common import eventlet_utils

eventlet_utils.monkey_patch()

import configparser  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402

from oslo_db.sqlalchemy import exc_filters  # noqa: E402
import sqlalchemy  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy import exc as sqla_exc  # noqa: E402

exc_filters.filters('sqlite', sqla_exc.OperationalError,
                    r'.*database is locked.*')(exc_filters._deadlock_error)


@event.listens_for(sqlalchemy.engine.Engine, 'connect')
def _sqlite_wal(dbapi_conn, record):
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute('PRAGMA journal_mode=WAL')
        cur.execute('PRAGMA busy_timeout=5000')
        cur.close()


def create_schema(url):
    from neutron.db.migration.models import head
    engine = sqlalchemy.create_engine(url)
    head.get_metadata().create_all(engine)
    engine.dispose()


def main():
    from neutron.cmd.eventlet.server import main as server_main
    conf = configparser.ConfigParser()
    conf.read(sys.argv[sys.argv.index('--config-file') + 1])
    create_schema(conf['database']['connection'])
    sys.exit(server_main())


if __name__ == '__main__':
    main()
