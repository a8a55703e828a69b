<?php
// What the pages ask of a log store (BEDS's msLogs: one document per event, see the BEDS repository's
// docs/protocol.md "Log events"). Two readers implement it: SqliteStore and MongoStore. Every method
// is read-only; every value from a request is passed as a bound parameter, never spliced into a query.
declare(strict_types=1);

namespace Beds\LogDumper;

/** A store that cannot be opened or read: the page says so instead of showing nothing. */
final class StoreError extends \RuntimeException
{
}

/** The recent-events page's filters; '' = not filtered. Times are ISO 8601 UTC, as stored. */
final class Filters
{
    public string $node = '';
    public string $env = '';
    public string $kind = '';
    public string $level = '';
    public string $template = '';
    public string $op = '';
    public string $outcome = '';  // ok | error | a code such as VALIDATION
    public string $from = '';     // ts >= from
    public string $to = '';       // ts <= to
    public string $text = '';     // part of the message
    public string $before = '';   // paging: events older than this ts
    public string $key = '';      // audit: data.key
    public string $actor = '';    // audit: data.actor

    /** @param array<string, mixed> $query */
    public static function fromQuery(array $query): self
    {
        $f = new self();
        foreach (get_object_vars($f) as $name => $unused) {
            $v = $query[$name] ?? '';
            $f->$name = is_string($v) ? mb_substr(trim($v), 0, 200) : '';
        }
        return $f;
    }
}

/** A store's events: each an array with the stored fields (event_id, parent_id, depth, kind, level,
 *  node, env, ts, duration_us, template, op, message, data). */
interface Store
{
    /** @return list<array<string, mixed>> newest first, at most $limit */
    public function recent(Filters $f, int $limit): array;

    /** The event and every event under it (at most $max), in no particular order; [] when unknown.
     *  @return list<array<string, mixed>> */
    public function subtree(string $eventId, int $max): array;

    /** Audit records (writes that were applied), newest first.
     *  @return list<array<string, mixed>> */
    public function audit(Filters $f, int $limit): array;

    /** Failed requests since $since, grouped by template, op and error code, each group with its count
     *  and newest example (template, op, code, count, last_ts, event_id, message), most recent first.
     *  @return list<array<string, mixed>> */
    public function errors(string $since, int $limit): array;

    /** IPL records, newest first. @return list<array<string, mixed>> */
    public function ipls(int $limit): array;

    /** Each node's newest metric event, by node name. @return array<string, array<string, mixed>> */
    public function lastMetrics(): array;
}

/** The error code of a request's message ("ok", or "CODE: message"), "" for ok. */
function outcome_code(string $message): string
{
    if ($message === 'ok' || str_ends_with($message, ': ok')) {
        return '';
    }
    $colon = strpos($message, ':');
    return $colon === false ? $message : substr($message, 0, $colon);
}
