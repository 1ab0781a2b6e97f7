-- Runs once, when the MySQL/MariaDB container starts on an empty data volume
-- (mounted at /docker-entrypoint-initdb.d/). The user and password come from the container's
-- MARIADB_USER / MARIADB_PASSWORD; the tables come from `python -m ml_api init-db`
-- (Alembic migrations), never from here.
CREATE DATABASE IF NOT EXISTS `ml_api` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON `ml_api`.* TO 'ml_api'@'%';
FLUSH PRIVILEGES;
