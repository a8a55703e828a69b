<?php
// The log store on MongoDB (the msLogs collection of a multi-machine install), read with Debian's
// php-mongodb driver. BEDS writes the key as _id and `ts` as a BSON date (millisecond precision).
// Read-only: only find and aggregate are sent, with secondaryPreferred reads.
declare(strict_types=1);

namespace Beds\LogDumper;

use MongoDB\BSON\Regex;
use MongoDB\BSON\UTCDateTime;
use MongoDB\Driver\Command;
use MongoDB\Driver\Manager;
use MongoDB\Driver\Query;
use MongoDB\Driver\ReadPreference;

final class MongoStore implements Store
{
    private Manager $manager;
    private string $ns;

    public function __construct(string $uri, private string $database, private string $collection)
    {
        if (!extension_loaded('mongodb')) {
            throw new StoreError('BEDS_LOG_MONGO_URI is set but PHP has no mongodb extension: install php-mongodb');
        }
        try {
            $this->manager = new Manager($uri, ['serverSelectionTimeoutMS' => 3000],
                ['typeMap' => ['root' => 'array', 'document' => 'array', 'array' => 'array']]);
        } catch (\Throwable $e) {
            throw new StoreError('cannot use the MongoDB log store: ' . $e->getMessage());
        }
        $this->ns = "$database.$collection";
    }

    private static function date(string $iso): UTCDateTime
    {
        $t = strtotime($iso);
        return new UTCDateTime(($t === false ? 0 : $t) * 1000);
    }

    /** A stored document as the pages expect it (event_id, ts as ISO text). @param array<string, mixed> $d */
    private static function event(array $d): array
    {
        $d['event_id'] = (string) ($d['_id'] ?? '');
        unset($d['_id']);
        if (($d['ts'] ?? null) instanceof UTCDateTime) {
            $d['ts'] = $d['ts']->toDateTime()->format('Y-m-d\TH:i:s.v\Z');
        }
        return $d;
    }

    /** @param array<string, mixed> $filter @param array<string, mixed> $options @return list<array<string, mixed>> */
    private function find(array $filter, array $options): array
    {
        try {
            $cursor = $this->manager->executeQuery($this->ns, new Query($filter, $options),
                ['readPreference' => new ReadPreference(ReadPreference::SECONDARY_PREFERRED)]);
            $cursor->setTypeMap(['root' => 'array', 'document' => 'array', 'array' => 'array']);
            return array_map([self::class, 'event'], $cursor->toArray());
        } catch (\Throwable $e) {
            throw new StoreError('reading the MongoDB log store: ' . $e->getMessage());
        }
    }

    /** @param list<array<string, mixed>> $pipeline @return list<array<string, mixed>> */
    private function aggregate(array $pipeline): array
    {
        try {
            $cursor = $this->manager->executeReadCommand($this->database, new Command([
                'aggregate' => $this->collection, 'pipeline' => $pipeline, 'cursor' => new \stdClass(),
            ]), ['readPreference' => new ReadPreference(ReadPreference::SECONDARY_PREFERRED)]);
            $cursor->setTypeMap(['root' => 'array', 'document' => 'array', 'array' => 'array']);
            return $cursor->toArray();
        } catch (\Throwable $e) {
            throw new StoreError('reading the MongoDB log store: ' . $e->getMessage());
        }
    }

    /** @return array<string, mixed> */
    private static function filter(Filters $f): array
    {
        $q = [];
        foreach (['node', 'env', 'kind', 'level', 'template', 'op'] as $name) {
            if ($f->$name !== '') {
                $q[$name] = $f->$name;
            }
        }
        $ok = new Regex('(^ok$|: ok$)', '');
        if ($f->outcome === 'ok') {
            $q['message'] = $ok;
        } elseif ($f->outcome === 'error') {
            $q['kind'] = ['$in' => ['request', 'adapter']];
            $q['message'] = ['$not' => $ok];
        } elseif ($f->outcome !== '') {
            $code = preg_quote($f->outcome);
            $q['message'] = new Regex("(^$code:|: $code\$)", '');
        }
        $ts = [];
        if ($f->from !== '') {
            $ts['$gte'] = self::date($f->from);
        }
        if ($f->to !== '') {
            $ts['$lte'] = self::date($f->to);
        }
        if ($f->before !== '') {
            $ts['$lt'] = self::date($f->before);
        }
        if ($ts) {
            $q['ts'] = $ts;
        }
        if ($f->text !== '') {
            $q['$and'][] = ['message' => new Regex(preg_quote($f->text), 'i')];
        }
        if ($f->key !== '') {
            $q['data.key'] = $f->key;
        }
        if ($f->actor !== '') {
            $q['data.actor'] = $f->actor;
        }
        return $q;
    }

    public function recent(Filters $f, int $limit): array
    {
        return $this->find(self::filter($f), ['sort' => ['ts' => -1], 'limit' => max(1, min($limit, 1000))]);
    }

    public function subtree(string $eventId, int $max): array
    {
        $out = $this->find(['_id' => $eventId], ['limit' => 1]);
        $level = array_map(fn ($e) => $e['event_id'], $out);
        // Down the by_parent index, one query per level.
        for ($depth = 0; $level && $depth < 64 && count($out) < $max; ++$depth) {
            $children = $this->find(['parent_id' => ['$in' => $level]], ['limit' => $max - count($out)]);
            $out = array_merge($out, $children);
            $level = array_map(fn ($e) => $e['event_id'], $children);
        }
        return $out;
    }

    public function audit(Filters $f, int $limit): array
    {
        $f = clone $f;
        $f->kind = 'audit';
        return $this->recent($f, $limit);
    }

    public function errors(string $since, int $limit): array
    {
        $rows = $this->aggregate([
            ['$match' => ['kind' => 'request', 'ts' => ['$gte' => self::date($since)], 'message' => ['$ne' => 'ok']]],
            ['$sort' => ['ts' => -1]],
            ['$group' => [
                '_id' => ['template' => '$template', 'op' => '$op',
                    'code' => ['$arrayElemAt' => [['$split' => ['$message', ':']], 0]]],
                'count' => ['$sum' => 1], 'last_ts' => ['$first' => '$ts'],
                'event_id' => ['$first' => '$_id'], 'message' => ['$first' => '$message'],
            ]],
            ['$sort' => ['last_ts' => -1]],
            ['$limit' => max(1, min($limit, 1000))],
        ]);
        return array_map(static function (array $r): array {
            $last = $r['last_ts'] instanceof UTCDateTime ? $r['last_ts']->toDateTime()->format('Y-m-d\TH:i:s.v\Z') : '';
            return ['template' => $r['_id']['template'] ?? '', 'op' => $r['_id']['op'] ?? '',
                'code' => $r['_id']['code'] ?? '', 'count' => $r['count'], 'last_ts' => $last,
                'event_id' => (string) $r['event_id'], 'message' => $r['message']];
        }, $rows);
    }

    public function ipls(int $limit): array
    {
        return $this->find(['kind' => 'ipl'], ['sort' => ['ts' => -1], 'limit' => max(1, min($limit, 1000))]);
    }

    public function lastMetrics(): array
    {
        $rows = $this->aggregate([
            ['$match' => ['kind' => 'metric']],
            ['$sort' => ['ts' => -1]],
            ['$group' => ['_id' => '$node', 'doc' => ['$first' => '$$ROOT']]],
        ]);
        $out = [];
        foreach ($rows as $r) {
            $out[(string) $r['_id']] = self::event($r['doc']);
        }
        ksort($out);
        return $out;
    }
}
