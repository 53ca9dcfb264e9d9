#!/bin/sh
# Run once by the mariadb image's entrypoint, when it initialises an empty datadir: creates the
# account the Strata agent connects with. The password comes from the container's environment
# (STRATA_DB_PASSWORD, from .env); it must not contain a single quote.
mariadb --protocol=socket -uroot -p"${MARIADB_ROOT_PASSWORD}" <<SQL
CREATE USER IF NOT EXISTS 'strata'@'%' IDENTIFIED BY '${STRATA_DB_PASSWORD:?STRATA_DB_PASSWORD is not set}';
GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE, SELECT ON *.* TO 'strata'@'%';
SQL
