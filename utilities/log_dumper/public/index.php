<?php
// The log dumper's one entry point: ?page=recent|tree|audit|errors|nodes. It only reads the store.
declare(strict_types=1);

namespace Beds\LogDumper;

require_once __DIR__ . '/../lib/bootstrap.php';

// Nothing here runs script; nothing may frame it; a stored value that looked like markup would
// be inert even if it escaped (it does not: View.php's h()).
header("Content-Security-Policy: default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'");
header('X-Content-Type-Options: nosniff');
header('Referrer-Policy: no-referrer');
header('Content-Type: text/html; charset=utf-8');

if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'GET' && ($_SERVER['REQUEST_METHOD'] ?? '') !== 'HEAD') {
    http_response_code(405);
    header('Allow: GET, HEAD');
    echo page('Not allowed', '<p>The log dumper only reads: use GET.</p>');
    return;
}

$pages = [
    'recent' => render_recent(...), 'tree' => render_tree(...), 'audit' => render_audit(...),
    'errors' => render_errors(...), 'nodes' => render_nodes(...),
];
$name = is_string($_GET['page'] ?? null) ? $_GET['page'] : 'recent';
if (!isset($pages[$name])) {
    http_response_code(404);
    echo page('No such page', '<p>There is no page ' . h($name) . '.</p>');
    return;
}
try {
    // Apache's SetEnv reaches PHP in $_SERVER, not in the process environment.
    $env = array_merge(getenv(), array_filter($_SERVER, 'is_string'));
    $store = Config::load($env, __DIR__ . '/../config.ini')->open();
    echo $pages[$name]($store, $_GET);
} catch (StoreError $e) {
    http_response_code(503);
    echo page('Log store unavailable', '<p class="error">' . h($e->getMessage()) . '</p>');
}
