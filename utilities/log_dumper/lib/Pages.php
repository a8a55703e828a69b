<?php
// The five pages. Each takes the store and the query string and returns the page's HTML.
declare(strict_types=1);

namespace Beds\LogDumper;

const PAGE_SIZE = 100;
const TREE_MAX = 5000;

/** A stored time ("2026-11-23T17:07:20.123456Z") as microseconds since the epoch, or null. */
function micros(string $ts): ?int
{
    if (!preg_match('/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z?$/', $ts, $m)) {
        return null;
    }
    $seconds = strtotime($m[1] . 'T' . $m[2] . 'Z');
    if ($seconds === false) {
        return null;
    }
    $fraction = substr(str_pad($m[3] ?? '', 6, '0'), 0, 6);
    return $seconds * 1000000 + (int) $fraction;
}

/** @param array<string, mixed> $query */
function render_recent(Store $store, array $query): string
{
    $f = Filters::fromQuery($query);
    $tail = ($query['tail'] ?? '') === '1';
    $events = $store->recent($f, PAGE_SIZE);
    $form = '<form class="filters" method="get"><input type="hidden" name="page" value="recent">';
    foreach (['node', 'env', 'kind', 'level', 'template', 'op', 'outcome', 'from', 'to', 'text'] as $name) {
        $hint = ['outcome' => 'ok, error or a code', 'from' => '2026-12-04T10:00:00Z', 'to' => 'ISO 8601 UTC',
            'kind' => 'request, adapter, audit, log, ipl, metric'][$name] ?? '';
        $form .= '<label>' . h($name) . ' <input name="' . h($name) . '" value="' . h($f->$name)
            . '" placeholder="' . h($hint) . '"></label> ';
    }
    $form .= '<label><input type="checkbox" name="tail" value="1"' . ($tail ? ' checked' : '')
        . '> tail (refresh every 5 s)</label> <button type="submit">Show</button></form>';
    $more = '';
    if (count($events) === PAGE_SIZE && !$tail) {
        $params = array_filter(get_object_vars($f), static fn ($v) => $v !== '');
        $params['before'] = (string) ($events[count($events) - 1]['ts'] ?? '');
        $more = '<p><a class="older" href="' . h(link_to('recent', $params)) . '">older events</a></p>';
    }
    return page('Recent events', $form . event_table($events) . $more, $tail ? 5 : 0);
}

/** @param array<string, mixed> $query */
function render_tree(Store $store, array $query): string
{
    $id = is_string($query['id'] ?? null) ? $query['id'] : '';
    $form = '<form method="get"><input type="hidden" name="page" value="tree"><label>event id '
        . '<input name="id" size="60" value="' . h($id) . '"></label> <button type="submit">Show</button></form>';
    if ($id === '') {
        return page('One event\'s tree', $form);
    }
    $events = $store->subtree($id, TREE_MAX + 1);
    if (!$events) {
        return page('One event\'s tree', $form . '<p class="empty">No event ' . h($id) . ' in the store.</p>');
    }
    $truncated = count($events) > TREE_MAX;
    $events = array_slice($events, 0, TREE_MAX);
    return page('One event\'s tree', $form . waterfall($events, $id, $truncated));
}

/**
 * The tree as a waterfall: one row per event in tree order (each event's children by time under
 * it), indented by depth, a bar on the tree's time axis (from ts - duration to ts: an event is
 * stamped when it ends), coloured by outcome, each row expandable to its stored fields.
 * @param list<array<string, mixed>> $events
 */
function waterfall(array $events, string $rootId, bool $truncated): string
{
    $byId = [];
    $children = [];
    foreach ($events as $e) {
        $byId[(string) $e['event_id']] = $e;
    }
    foreach ($events as $e) {
        $parent = (string) ($e['parent_id'] ?? '');
        if ((string) $e['event_id'] !== $rootId && isset($byId[$parent])) {
            $children[$parent][] = $e;
        }
    }
    $start = PHP_INT_MAX;
    $end = PHP_INT_MIN;
    foreach ($events as $e) {
        $t = micros((string) ($e['ts'] ?? ''));
        if ($t === null) {
            continue;
        }
        $start = min($start, $t - (int) ($e['duration_us'] ?? 0));
        $end = max($end, $t);
    }
    $span = max(1, $end - $start);
    $rows = '';
    $count = 0;
    $walk = function (array $e, int $level) use (&$walk, &$rows, &$count, $children, $start, $span): void {
        $id = (string) $e['event_id'];
        $t = micros((string) ($e['ts'] ?? ''));
        $duration = (int) ($e['duration_us'] ?? 0);
        $x = $t === null ? 0.0 : max(0.0, ($t - $duration - $start) * 1000.0 / $span);
        $w = max(2.0, $duration * 1000.0 / $span);
        $class = outcome_class($e);
        $what = trim(($e['template'] ?? '') . '/' . ($e['op'] ?? ''), '/');
        $rows .= '<tr class="' . $class . '" data-event-id="' . h($id) . '" data-depth="' . $level . '">'
            . '<td class="name depth-' . min($level, 32) . '"><details><summary>' . h($e['kind'] ?? '') . ' '
            . h($what) . ' <span class="muted">' . cut($e['message'] ?? '', 80) . '</span></summary><pre>'
            . h($e) . '</pre></details></td>'
            . '<td>' . h($e['node'] ?? '') . '</td><td class="num">' . h($e['duration_us'] ?? '') . '</td>'
            . '<td class="bar"><svg viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" aria-label="'
            . h(($e['ts'] ?? '') . ', ' . $duration . ' µs') . '"><rect class="' . $class . '" x="'
            . sprintf('%.2f', min($x, 998.0)) . '" y="0" width="' . sprintf('%.2f', $w) . '" height="10"/></svg></td></tr>';
        ++$count;
        $kids = $children[$id] ?? [];
        usort($kids, static fn ($a, $b) => strcmp((string) ($a['ts'] ?? ''), (string) ($b['ts'] ?? '')));
        foreach ($kids as $kid) {
            $walk($kid, $level + 1);
        }
    };
    $root = null;
    foreach ($events as $e) {
        if ((string) $e['event_id'] === $rootId) {
            $root = $e;
        }
    }
    if ($root !== null) {
        $walk($root, 0);
    }
    $summary = '<p class="summary">' . $count . ' event(s) over ' . h(number_format($span)) . ' µs'
        . ($truncated ? ', truncated at ' . TREE_MAX . ' events' : '') . '</p>';
    return $summary . '<table class="tree"><thead><tr><th>event</th><th>node</th><th>µs</th>'
        . '<th class="bar">time</th></tr></thead><tbody>' . $rows . '</tbody></table>';
}

/** @param array<string, mixed> $query */
function render_audit(Store $store, array $query): string
{
    $f = Filters::fromQuery($query);
    $form = '<form class="filters" method="get"><input type="hidden" name="page" value="audit">';
    foreach (['template', 'op', 'key', 'actor', 'node', 'from', 'to'] as $name) {
        $form .= '<label>' . h($name) . ' <input name="' . h($name) . '" value="' . h($f->$name) . '"></label> ';
    }
    $form .= '<button type="submit">Show</button></form>';
    $events = $store->audit($f, PAGE_SIZE);
    if (!$events) {
        return page('Audit trail', $form . '<p class="empty">No audit records.</p>');
    }
    $html = '<table class="events"><thead><tr><th>time (UTC)</th><th>template/op</th><th>key</th><th>actor</th>'
        . '<th>node</th><th>answered</th><th></th></tr></thead><tbody>';
    foreach ($events as $e) {
        $data = is_array($e['data'] ?? null) ? $e['data'] : [];
        $actor = (string) ($data['actor'] ?? '') . (isset($data['via']) ? ' via ' . $data['via'] : '');
        $html .= '<tr data-event-id="' . h($e['event_id']) . '"><td class="ts">' . h($e['ts'] ?? '') . '</td>'
            . '<td>' . h(trim(($e['template'] ?? '') . '/' . ($e['op'] ?? ''), '/')) . '</td>'
            . '<td>' . cut($data['key'] ?? '', 60) . '</td><td>' . cut($actor, 60) . '</td>'
            . '<td>' . h($e['node'] ?? '') . '</td><td class="data">' . cut($data['after'] ?? '') . '</td>'
            . '<td><a href="' . h(link_to('tree', ['id' => (string) ($e['parent_id'] ?: $e['event_id'])]))
            . '">request</a></td></tr>';
    }
    return page('Audit trail', $form . $html . '</tbody></table>');
}

/** @param array<string, mixed> $query */
function render_errors(Store $store, array $query): string
{
    $windows = ['1h' => 3600, '24h' => 86400, '7d' => 604800, '30d' => 2592000];
    $window = is_string($query['window'] ?? null) && isset($windows[$query['window']]) ? $query['window'] : '24h';
    $since = gmdate('Y-m-d\TH:i:s\Z', time() - $windows[$window]);
    $links = '';
    foreach ($windows as $name => $unused) {
        $links .= $name === $window ? '<strong>' . h($name) . '</strong> '
            : '<a href="' . h(link_to('errors', ['window' => $name])) . '">' . h($name) . '</a> ';
    }
    $groups = $store->errors($since, 200);
    if (!$groups) {
        return page('Errors', '<p>Window: ' . $links . '</p><p class="empty">No failed requests since ' . h($since) . '.</p>');
    }
    $html = '<table class="events"><thead><tr><th>template/op</th><th>code</th><th>count</th><th>last (UTC)</th>'
        . '<th>newest example</th></tr></thead><tbody>';
    foreach ($groups as $g) {
        $html .= '<tr class="error"><td>' . h(trim($g['template'] . '/' . $g['op'], '/')) . '</td><td>' . h($g['code'])
            . '</td><td class="num">' . h($g['count']) . '</td><td class="ts">' . h($g['last_ts']) . '</td>'
            . '<td><a href="' . h(link_to('tree', ['id' => (string) $g['event_id']])) . '">' . cut($g['message'], 120)
            . '</a></td></tr>';
    }
    return page('Errors', '<p>Window: ' . $links . '</p>' . $html . '</tbody></table>');
}

/** @param array<string, mixed> $query */
function render_nodes(Store $store, array $query): string
{
    $ipls = $store->ipls(200);
    $html = '<h2>IPL records</h2>';
    if (!$ipls) {
        $html .= '<p class="empty">No IPL records.</p>';
    } else {
        $html .= '<table class="events"><thead><tr><th>time (UTC)</th><th>node</th><th>env</th><th>version</th>'
            . '<th>config</th><th>production</th><th>templates</th><th>brokers</th></tr></thead><tbody>';
        foreach ($ipls as $e) {
            $d = is_array($e['data'] ?? null) ? $e['data'] : [];
            $brokers = [];
            foreach ((array) ($d['brokers'] ?? []) as $b) {
                if (is_array($b)) {
                    $brokers[] = ($b['broker'] ?? '') . ' (' . ($b['handler'] ?? '') . ' ×' . ($b['instances'] ?? '') . ')';
                }
            }
            $html .= '<tr data-event-id="' . h($e['event_id']) . '"><td class="ts">' . h($e['ts'] ?? '') . '</td><td>'
                . h($e['node'] ?? '') . '</td><td>' . h($e['env'] ?? '') . '</td><td>' . h($d['version'] ?? '')
                . '</td><td>' . h($d['config_digest'] ?? '') . '</td><td>' . h(json_encode($d['production'] ?? null))
                . '</td><td>' . cut(implode(', ', array_map('strval', (array) ($d['templates'] ?? []))), 120)
                . '</td><td>' . cut(implode(', ', $brokers), 160) . '</td></tr>';
        }
        $html .= '</tbody></table>';
    }
    $html .= '<h2>Each node\'s last metrics</h2>';
    $metrics = $store->lastMetrics();
    if (!$metrics) {
        return page('Nodes', $html . '<p class="empty">No metric events.</p>');
    }
    $html .= '<table class="events"><thead><tr><th>node</th><th>time (UTC)</th><th>pool</th><th>alive/instances</th>'
        . '<th>in flight</th><th>consumed</th><th>acked</th><th>retried</th><th>parked</th></tr></thead><tbody>';
    foreach ($metrics as $node => $e) {
        $pools = (array) (($e['data'] ?? [])['pools'] ?? []);
        foreach ($pools ?: [[]] as $p) {
            $p = is_array($p) ? $p : [];
            $html .= '<tr data-node="' . h($node) . '"><td>' . h($node) . '</td><td class="ts">' . h($e['ts'] ?? '')
                . '</td><td>' . h($p['broker'] ?? '') . '</td><td>' . h(($p['alive'] ?? '') . '/' . ($p['instances'] ?? ''))
                . '</td><td class="num">' . h($p['in_flight'] ?? '') . '</td><td class="num">' . h($p['consumed'] ?? '')
                . '</td><td class="num">' . h($p['acked'] ?? '') . '</td><td class="num">' . h($p['retried'] ?? '')
                . '</td><td class="num">' . h($p['parked'] ?? '') . '</td></tr>';
        }
    }
    return page('Nodes', $html . '</tbody></table>');
}
