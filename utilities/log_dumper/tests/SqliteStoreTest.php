<?php
// The SQLite reader on a store written by a real admin node. Run by the BEDS repository's
// tests/e2e/log_dumper_test.py, which makes the traffic and passes what it made in the environment:
// BEDS_LOG_SQLITE (the store), BEDS_TEST_NODE, BEDS_TEST_ROOT (a request with BEDS_TEST_CHILDREN
// children), BEDS_TEST_AUDIT_KEY (a created row's key) and BEDS_TEST_HOSTILE (an event id).
declare(strict_types=1);

use Beds\LogDumper\Filters;
use Beds\LogDumper\SqliteStore;
use PHPUnit\Framework\TestCase;

final class SqliteStoreTest extends TestCase
{
    private static SqliteStore $store;
    private static string $path;

    public static function setUpBeforeClass(): void
    {
        self::$path = (string) getenv('BEDS_LOG_SQLITE');
    }

    protected function setUp(): void
    {
        if (self::$path === '') {
            $this->markTestSkipped('SKIPPED: no store: BEDS_LOG_SQLITE is not set (tests/e2e/log_dumper_test.py sets it)');
        }
        self::$store ??= new SqliteStore(self::$path, 'msLogs');
    }

    private static function filters(array $values): Filters
    {
        return Filters::fromQuery($values);
    }

    public function testRecentIsNewestFirstAndPagesBackwards(): void
    {
        $events = self::$store->recent(new Filters(), 50);
        $this->assertCount(50, $events);
        for ($i = 1; $i < count($events); ++$i) {
            $this->assertGreaterThanOrEqual($events[$i]['ts'], $events[$i - 1]['ts']);
        }
        $older = self::$store->recent(self::filters(['before' => $events[49]['ts']]), 50);
        $this->assertNotEmpty($older);
        foreach ($older as $e) {
            $this->assertLessThan($events[49]['ts'], $e['ts']);
        }
    }

    public function testFiltersNarrowWhatIsShown(): void
    {
        $node = (string) getenv('BEDS_TEST_NODE');
        foreach (self::$store->recent(self::filters(['node' => $node, 'kind' => 'request']), 100) as $e) {
            $this->assertSame($node, $e['node']);
            $this->assertSame('request', $e['kind']);
        }
        $invalid = self::$store->recent(self::filters(['outcome' => 'VALIDATION']), 100);
        $this->assertNotEmpty($invalid);
        foreach ($invalid as $e) {
            $this->assertStringContainsString('VALIDATION', $e['message']);
        }
        $ok = self::$store->recent(self::filters(['kind' => 'request', 'outcome' => 'ok']), 100);
        $this->assertNotEmpty($ok);
        foreach ($ok as $e) {
            $this->assertSame('ok', $e['message']);
        }
        $found = self::$store->recent(self::filters(['text' => '<script>']), 100);
        $this->assertContains((string) getenv('BEDS_TEST_HOSTILE'), array_column($found, 'event_id'));
        $this->assertSame([], self::$store->recent(self::filters(['node' => "x' OR '1'='1"]), 10));
        $this->assertSame([], self::$store->recent(self::filters(['text' => '%_no such text_%']), 10));
        $recentHour = self::$store->recent(self::filters(['from' => gmdate('Y-m-d\TH:i:s\Z', time() - 3600)]), 10);
        $this->assertNotEmpty($recentHour);
        $this->assertSame([], self::$store->recent(self::filters(['to' => '2000-01-01T00:00:00Z']), 10));
    }

    public function testTheSubtreeHoldsTheRequestAndEverythingItCaused(): void
    {
        $root = (string) getenv('BEDS_TEST_ROOT');
        $events = self::$store->subtree($root, 5000);
        $ids = array_column($events, 'event_id');
        $this->assertContains($root, $ids);
        $children = array_filter($events, static fn ($e) => ($e['parent_id'] ?? '') === $root && $e['kind'] === 'request');
        $this->assertCount((int) getenv('BEDS_TEST_CHILDREN'), $children);
        $this->assertSame([], self::$store->subtree('nobody.dev.00000000000000000000000000000000', 10));
    }

    public function testAuditByKeyNamesTheWriteAndWhatItAnswered(): void
    {
        $key = (string) getenv('BEDS_TEST_AUDIT_KEY');
        $audits = self::$store->audit(self::filters(['key' => $key, 'template' => 'Users']), 10);
        $this->assertNotEmpty($audits);
        foreach ($audits as $e) {
            $this->assertSame('audit', $e['kind']);
            $this->assertSame($key, (string) $e['data']['key']);
            $this->assertArrayHasKey('after', $e['data']);
        }
    }

    public function testErrorsAreGroupedWithTheirNewestExample(): void
    {
        $groups = self::$store->errors(gmdate('Y-m-d\TH:i:s\Z', time() - 3600), 100);
        $validation = array_values(array_filter($groups, static fn ($g) => $g['template'] === 'Users'
            && $g['op'] === 'create' && $g['code'] === 'VALIDATION'));
        $this->assertCount(1, $validation);
        $this->assertGreaterThanOrEqual(2, (int) $validation[0]['count']);
        $this->assertStringStartsWith('VALIDATION', $validation[0]['message']);
    }

    public function testNodesHaveTheirIplAndLastMetrics(): void
    {
        $node = (string) getenv('BEDS_TEST_NODE');
        $ipls = self::$store->ipls(10);
        $this->assertContains($node, array_column($ipls, 'node'));
        $this->assertNotEmpty($ipls[0]['data']['version']);
        $metrics = self::$store->lastMetrics();
        $this->assertArrayHasKey($node, $metrics);
        $this->assertNotEmpty($metrics[$node]['data']['pools']);
    }

    public function testReadingChangesNothing(): void
    {
        clearstatcache();
        $before = [filesize(self::$path), filemtime(self::$path)];
        self::$store->recent(new Filters(), 100);
        self::$store->errors('2000-01-01T00:00:00Z', 10);
        clearstatcache();
        $this->assertSame($before, [filesize(self::$path), filemtime(self::$path)]);
    }
}
