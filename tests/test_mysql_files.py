"""The files in mysql/ that the container stack mounts work on a real MariaDB."""
import configparser
import uuid

import pymysql

from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER
from tests.helpers import ROOT


def test_server_config_sets_utf8mb4_and_utc():
    config = configparser.ConfigParser(allow_no_value=True)
    config.read(ROOT / "mysql" / "conf.d" / "ml_api.cnf")
    assert config["mysqld"]["character-set-server"] == "utf8mb4"
    assert config["mysqld"]["default-time-zone"] == "'+00:00'"


def test_init_script_runs_on_mariadb(mysql_server):
    sql = (ROOT / "mysql" / "initdb" / "01-ml_api.sql").read_text()
    suffix = uuid.uuid4().hex[:8]
    database, user = f"ml_api_init_{suffix}", f"ml_api_{suffix}"
    sql = sql.replace("`ml_api`", f"`{database}`").replace("'ml_api'@", f"'{user}'@")
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'x'")  # the container's job
            for statement in filter(None, (s.strip() for s in _without_comments(sql).split(";"))):
                cur.execute(statement)
            cur.execute("SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = %s", (database,))
            assert cur.fetchone() == ("utf8mb4",)
            cur.execute(f"SHOW GRANTS FOR '{user}'@'%'")
            assert any(database in row[0] and "ALL PRIVILEGES" in row[0] for row in cur.fetchall())
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        conn.close()


def _without_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
