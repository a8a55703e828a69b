<?php
// Where the log store is: the observer's only configuration (README.md "Configuration").
// Environment variables win over config.ini beside this directory, so an Apache SetEnv or a
// container's environment needs no file.
declare(strict_types=1);

namespace Beds\LogDumper;

final class Config
{
    public function __construct(
        public readonly string $sqlitePath = '',
        public readonly string $mongoUri = '',
        public readonly string $mongoDatabase = 'beds',
        public readonly string $collection = 'msLogs',
    ) {
    }

    /** @param array<string, string|false> $env */
    public static function load(array $env, string $iniFile): self
    {
        $ini = is_readable($iniFile) ? (parse_ini_file($iniFile) ?: []) : [];
        $pick = static function (string $envName, string $iniName, string $default) use ($env, $ini): string {
            $v = $env[$envName] ?? false;
            if (is_string($v) && $v !== '') {
                return $v;
            }
            return isset($ini[$iniName]) && $ini[$iniName] !== '' ? (string) $ini[$iniName] : $default;
        };
        return new self(
            $pick('BEDS_LOG_SQLITE', 'sqlite', ''),
            $pick('BEDS_LOG_MONGO_URI', 'mongo_uri', ''),
            $pick('BEDS_LOG_MONGO_DB', 'mongo_db', 'beds'),
            $pick('BEDS_LOG_COLLECTION', 'collection', 'msLogs'),
        );
    }

    /** The store this configuration names; throws StoreError saying what to set when it names none. */
    public function open(): Store
    {
        if ($this->sqlitePath !== '') {
            return new SqliteStore($this->sqlitePath, $this->collection);
        }
        if ($this->mongoUri !== '') {
            return new MongoStore($this->mongoUri, $this->mongoDatabase, $this->collection);
        }
        throw new StoreError('no log store configured: set BEDS_LOG_SQLITE to the SQLite file '
            . '(var/docs.sqlite on a single-machine install), or BEDS_LOG_MONGO_URI and '
            . 'BEDS_LOG_MONGO_DB, in the environment or in config.ini (README.md "Configuration")');
    }
}
