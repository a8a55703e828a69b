<?php
// HTML for the pages. Everything that came from the store goes through h(): event messages and
// fields carry client-supplied text, which must show as text, never act as markup. Invalid UTF-8
// is replaced (ENT_SUBSTITUTE), and long values are cut for display with the whole kept behind a
// <details>.
declare(strict_types=1);

namespace Beds\LogDumper;

function h(mixed $value): string
{
    if (is_array($value)) {
        $value = json_encode($value, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
            | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
    }
    return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML5, 'UTF-8');
}

/** A value cut to $max characters for a table cell; the whole of it behind a <details>. */
function cut(mixed $value, int $max = 160): string
{
    $text = is_array($value) ? (string) json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
        | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR) : (string) $value;
    $text = mb_scrub($text, 'UTF-8');
    if (mb_strlen($text) <= $max) {
        return h($text);
    }
    return '<details><summary>' . h(mb_substr($text, 0, $max)) . '…</summary><pre>' . h($text) . '</pre></details>';
}

/** The link to a page with these query parameters (empty ones left out). @param array<string, string> $params */
function link_to(string $page, array $params = []): string
{
    $params = array_filter(['page' => $page] + $params, static fn ($v) => $v !== '' && $v !== null);
    return '?' . http_build_query($params, '', '&', PHP_QUERY_RFC3986);
}

/** "ok", "error" or "warn": an event's colour. @param array<string, mixed> $e */
function outcome_class(array $e): string
{
    $level = (string) ($e['level'] ?? '');
    if (in_array($level, ['error', 'critical'], true)) {
        return 'error';
    }
    $kind = (string) ($e['kind'] ?? '');
    if (in_array($kind, ['request', 'adapter'], true) && outcome_code((string) ($e['message'] ?? '')) !== '') {
        return 'error';
    }
    return $level === 'warn' ? 'warn' : 'ok';
}

function page(string $title, string $body, int $refreshSeconds = 0): string
{
    $nav = '';
    foreach (['recent' => 'Recent events', 'audit' => 'Audit trail', 'errors' => 'Errors', 'nodes' => 'Nodes'] as $p => $label) {
        $nav .= '<a href="' . h(link_to($p)) . '">' . h($label) . '</a> ';
    }
    $refresh = $refreshSeconds > 0 ? '<meta http-equiv="refresh" content="' . $refreshSeconds . '">' : '';
    return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">$refresh"
        . '<title>' . h($title) . ' · BEDS log dumper</title><link rel="icon" href="data:,">'
        . '<link rel="stylesheet" href="style.css"></head><body>'
        . '<header><strong>BEDS log dumper</strong> <nav>' . $nav . '</nav></header>'
        . '<main><h1>' . h($title) . '</h1>' . $body . '</main></body></html>';
}

/** A table of events with the given columns. @param list<array<string, mixed>> $events */
function event_table(array $events, bool $withData = false): string
{
    if (!$events) {
        return '<p class="empty">No events.</p>';
    }
    $html = '<table class="events"><thead><tr><th>time (UTC)</th><th>node</th><th>kind</th><th>level</th>'
        . '<th>template/op</th><th>µs</th><th>message</th>' . ($withData ? '<th>data</th>' : '') . '<th></th></tr></thead><tbody>';
    foreach ($events as $e) {
        $id = (string) ($e['event_id'] ?? '');
        $html .= '<tr class="' . outcome_class($e) . '" data-event-id="' . h($id) . '">'
            . '<td class="ts">' . h($e['ts'] ?? '') . '</td><td>' . h($e['node'] ?? '') . '</td>'
            . '<td>' . h($e['kind'] ?? '') . '</td><td>' . h($e['level'] ?? '') . '</td>'
            . '<td>' . h(trim(($e['template'] ?? '') . '/' . ($e['op'] ?? ''), '/')) . '</td>'
            . '<td class="num">' . h($e['duration_us'] ?? '') . '</td>'
            . '<td class="message">' . cut($e['message'] ?? '') . '</td>'
            . ($withData ? '<td class="data">' . cut($e['data'] ?? '') . '</td>' : '')
            . '<td><a href="' . h(link_to('tree', ['id' => $id])) . '">tree</a></td></tr>';
    }
    return $html . '</tbody></table>';
}
