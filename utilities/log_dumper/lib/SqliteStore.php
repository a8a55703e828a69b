<?php
// The log store in the SQLite file of a single-machine install: BEDS keeps a REC collection as a
// table (id = the key, doc = the JSON document) and indexes fields as json_extract(doc,'$.field'),
// so the queries below spell their fields the same way to use those indexes (the BEDS template
// templates/mst_logger_rec.toml declares them: by_parent, by_ts, by_kind). Opened read-only.
declare(strict_types=1);

namespace Beds\LogDumper;

final class SqliteStore implements Store
{
    private \PDO $db;
    private string $table;

    public function __construct(string $path, string $collection)
    {
        if (!is_file($path)) {
            throw new StoreError("the SQLite log store $path does not exist (BEDS_LOG_SQLITE)");
        }
        // BEDS keeps the store in WAL mode. While a node writes it, its -wal and -shm files exist and
        // a read-only reader uses them. When none does (BEDS stopped: the files are gone), reading
        // would need to create the -shm file, which a reader that may not write the directory (Apache's
        // www-data) cannot: it then reads the file as it is, as immutable. A request opens the store
        // afresh, so a node that starts writing is seen from the next request on.
        $immutable = !file_exists($path . '-wal') && !is_writable(dirname($path));
        $dsn = $immutable ? 'sqlite:file:' . rawurlencode($path) . '?mode=ro&immutable=1' : 'sqlite:' . $path;
        $dsn = str_replace('%2F', '/', $dsn);
        try {
            $this->db = new \PDO($dsn, null, null, [
                \PDO::SQLITE_ATTR_OPEN_FLAGS => \PDO::SQLITE_OPEN_READONLY,
                \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
                \PDO::ATTR_TIMEOUT => 5,
            ]);
            $this->db->exec('PRAGMA query_only = 1');
        } catch (\PDOException $e) {
            throw new StoreError("cannot open the SQLite log store $path: " . $e->getMessage());
        }
        if (!preg_match('/^[A-Za-z_][A-Za-z0-9_]*$/', $collection)) {
            throw new StoreError("not a collection name: $collection");
        }
        $this->table = '"' . $collection . '"';
    }

    private static function field(string $name): string
    {
        return "json_extract(doc,'$.$name')";
    }

    /** @param array<int|string, mixed> $params @return list<array<string, mixed>> */
    private function rows(string $sql, array $params): array
    {
        try {
            $st = $this->db->prepare($sql);
            $st->execute($params);
            $out = [];
            while (($row = $st->fetch(\PDO::FETCH_ASSOC)) !== false) {
                $out[] = $row;
            }
            return $out;
        } catch (\PDOException $e) {
            throw new StoreError('reading the log store: ' . $e->getMessage());
        }
    }

    /** @param list<array<string, mixed>> $rows @return list<array<string, mixed>> */
    private static function events(array $rows): array
    {
        $out = [];
        foreach ($rows as $row) {
            $doc = json_decode((string) $row['doc'], true, 64, JSON_INVALID_UTF8_SUBSTITUTE);
            if (!is_array($doc)) {
                continue;
            }
            $doc['event_id'] = (string) $row['id'];
            $out[] = $doc;
        }
        return $out;
    }

    /** The WHERE terms of $f and their parameters. @return array{0: list<string>, 1: array<string, string>} */
    private static function where(Filters $f): array
    {
        $terms = [];
        $params = [];
        foreach (['node', 'env', 'kind', 'level', 'template', 'op'] as $name) {
            if ($f->$name !== '') {
                $terms[] = self::field($name) . " = :$name";
                $params[$name] = $f->$name;
            }
        }
        $message = self::field('message');
        if ($f->outcome === 'ok') {
            $terms[] = "($message = 'ok' OR $message LIKE '%: ok')";
        } elseif ($f->outcome === 'error') {
            $terms[] = self::field('kind') . " IN ('request', 'adapter') AND NOT ($message = 'ok' OR $message LIKE '%: ok')";
        } elseif ($f->outcome !== '') {
            $terms[] = "($message LIKE :code_a ESCAPE '\\' OR $message LIKE :code_b ESCAPE '\\')";
            $params['code_a'] = self::like($f->outcome) . ':%';
            $params['code_b'] = '%: ' . self::like($f->outcome);
        }
        $ts = self::field('ts');
        if ($f->from !== '') {
            $terms[] = "$ts >= :from";
            $params['from'] = $f->from;
        }
        if ($f->to !== '') {
            $terms[] = "$ts <= :to";
            $params['to'] = $f->to;
        }
        if ($f->before !== '') {
            $terms[] = "$ts < :before";
            $params['before'] = $f->before;
        }
        if ($f->text !== '') {
            $terms[] = "$message LIKE :text ESCAPE '\\'";
            $params['text'] = '%' . self::like($f->text) . '%';
        }
        if ($f->key !== '') {
            $terms[] = self::field('data.key') . ' = :key';
            $params['key'] = $f->key;
        }
        if ($f->actor !== '') {
            $terms[] = self::field('data.actor') . ' = :actor';
            $params['actor'] = $f->actor;
        }
        return [$terms, $params];
    }

    private static function like(string $s): string
    {
        return strtr($s, ['\\' => '\\\\', '%' => '\\%', '_' => '\\_']);
    }

    public function recent(Filters $f, int $limit): array
    {
        [$terms, $params] = self::where($f);
        $sql = "SELECT id, doc FROM {$this->table}" . ($terms ? ' WHERE ' . implode(' AND ', $terms) : '')
            . ' ORDER BY ' . self::field('ts') . ' DESC LIMIT ' . max(1, min($limit, 1000));
        return self::events($this->rows($sql, $params));
    }

    public function subtree(string $eventId, int $max): array
    {
        $out = self::events($this->rows("SELECT id, doc FROM {$this->table} WHERE id = :id", ['id' => $eventId]));
        $level = array_column($out, 'event_id');
        // Level by level down the by_parent index, its ids in chunks: a recursive CTE would do the
        // same in one statement, but SQLite's planner does not use an expression index in a
        // recursive step and scans the whole store once per event instead.
        $parent = self::field('parent_id');
        for ($depth = 0; $level && $depth < 64 && count($out) < $max; ++$depth) {
            $next = [];
            foreach (array_chunk($level, 500) as $chunk) {
                $marks = implode(', ', array_fill(0, count($chunk), '?'));
                $children = self::events($this->rows("SELECT id, doc FROM {$this->table} WHERE $parent IN ($marks)"
                    . ' LIMIT ' . max(1, $max - count($out)), $chunk));
                array_push($out, ...$children);
                array_push($next, ...array_column($children, 'event_id'));
                if (count($out) >= $max) {
                    break;
                }
            }
            $level = $next;
        }
        return array_slice($out, 0, $max);
    }

    public function audit(Filters $f, int $limit): array
    {
        $f = clone $f;
        $f->kind = 'audit';
        return $this->recent($f, $limit);
    }

    public function errors(string $since, int $limit): array
    {
        $ts = self::field('ts');
        $message = self::field('message');
        // Grouped in SQL; SQLite gives a bare column the values of the row holding the MAX().
        $sql = 'SELECT template, op, code, COUNT(*) AS count, MAX(ts) AS last_ts, id AS event_id, message FROM ('
            . " SELECT id, $ts AS ts, " . self::field('template') . ' AS template, ' . self::field('op') . ' AS op,'
            . " $message AS message,"
            . " CASE WHEN instr($message, ':') > 0 THEN substr($message, 1, instr($message, ':') - 1) ELSE $message END AS code"
            . " FROM {$this->table} WHERE " . self::field('kind') . " = 'request' AND $ts >= :since AND $message <> 'ok')"
            . ' GROUP BY template, op, code ORDER BY last_ts DESC LIMIT ' . max(1, min($limit, 1000));
        return $this->rows($sql, ['since' => $since]);
    }

    public function ipls(int $limit): array
    {
        $f = new Filters();
        $f->kind = 'ipl';
        return $this->recent($f, $limit);
    }

    public function lastMetrics(): array
    {
        $ts = self::field('ts');
        $sql = "SELECT id, doc, MAX($ts) FROM {$this->table} WHERE " . self::field('kind') . " = 'metric'"
            . ' GROUP BY ' . self::field('node');
        $out = [];
        foreach (self::events($this->rows($sql, [])) as $e) {
            $out[(string) ($e['node'] ?? '')] = $e;
        }
        ksort($out);
        return $out;
    }
}
