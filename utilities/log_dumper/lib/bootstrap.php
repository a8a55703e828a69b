<?php
// Loads the observer's code; shared by public/index.php and the tests.
declare(strict_types=1);

require_once __DIR__ . '/Store.php';
require_once __DIR__ . '/Config.php';
require_once __DIR__ . '/SqliteStore.php';
require_once __DIR__ . '/MongoStore.php';
require_once __DIR__ . '/View.php';
require_once __DIR__ . '/Pages.php';
