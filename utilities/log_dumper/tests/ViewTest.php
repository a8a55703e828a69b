<?php
// What the pages print of stored values: escaped, cut, and never invalid UTF-8.
declare(strict_types=1);

use PHPUnit\Framework\TestCase;

use function Beds\LogDumper\cut;
use function Beds\LogDumper\h;
use function Beds\LogDumper\micros;
use function Beds\LogDumper\outcome_code;
use function Beds\LogDumper\waterfall;

final class ViewTest extends TestCase
{
    public function testMarkupAndScriptAreText(): void
    {
        $this->assertSame('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;', h('<script>alert("x")</script>'));
        $this->assertSame('&lt;img src=x onerror=&apos;a()&apos;&gt;', h("<img src=x onerror='a()'>"));
        $this->assertStringNotContainsString('<b>', h(['a' => '<b>bold</b>']));
    }

    public function testInvalidUtf8IsReplacedNotDropped(): void
    {
        $out = h("ok \xC3\x28 \xFF end");
        $this->assertTrue(mb_check_encoding($out, 'UTF-8'));
        $this->assertStringContainsString('ok', $out);
        $this->assertStringContainsString('end', $out);
        $this->assertTrue(mb_check_encoding(cut("\xFF\xFE" . str_repeat('x', 500)), 'UTF-8'));
    }

    public function testLongValuesAreCutWithTheWholeBehindDetails(): void
    {
        $long = str_repeat('<a>', 1000);
        $out = cut($long, 50);
        $this->assertStringStartsWith('<details><summary>', $out);
        $this->assertStringContainsString(h($long), $out);
        $this->assertStringNotContainsString('<a>', $out);
        $this->assertSame('short', cut('short', 50));
    }

    public function testTimesAndOutcomes(): void
    {
        $this->assertSame(1764844040123456, micros('2025-12-04T10:27:20.123456Z'));
        $this->assertSame(1764844040000000, micros('2025-12-04T10:27:20Z'));
        $this->assertSame(1764844040120000, micros('2025-12-04T10:27:20.12Z'));
        $this->assertNull(micros('yesterday'));
        $this->assertSame('', outcome_code('ok'));
        $this->assertSame('', outcome_code('mariadb main: ok'));
        $this->assertSame('VALIDATION', outcome_code("VALIDATION: field 'email' is required"));
    }

    public function testTheWaterfallNestsByParentAndPlacesBarsOnOneTimeAxis(): void
    {
        $events = [
            ['event_id' => 'n.dev.2', 'parent_id' => 'n.dev.1', 'depth' => 1, 'kind' => 'adapter', 'ts' => '2026-01-01T00:00:00.900000Z', 'duration_us' => 400000, 'message' => 'mariadb main: ok'],
            ['event_id' => 'n.dev.1', 'parent_id' => '', 'depth' => 0, 'kind' => 'request', 'ts' => '2026-01-01T00:00:01.000000Z', 'duration_us' => 1000000, 'message' => 'ok', 'template' => 'Users', 'op' => 'create'],
            ['event_id' => 'n.dev.3', 'parent_id' => 'n.dev.2', 'depth' => 2, 'kind' => 'log', 'level' => 'error', 'ts' => '2026-01-01T00:00:00.700000Z', 'message' => '<script>x</script>'],
        ];
        $html = waterfall($events, 'n.dev.1', false);
        $root = strpos($html, 'data-event-id="n.dev.1" data-depth="0"');
        $child = strpos($html, 'data-event-id="n.dev.2" data-depth="1"');
        $grandchild = strpos($html, 'data-event-id="n.dev.3" data-depth="2"');
        $this->assertNotFalse($root);
        $this->assertNotFalse($child);
        $this->assertNotFalse($grandchild);
        $this->assertTrue($root < $child && $child < $grandchild, 'tree order');
        // The root spans the whole second: its bar starts at 0 and is 1000 wide.
        $this->assertMatchesRegularExpression('/data-event-id="n.dev.1".*?<rect class="ok" x="0.00" y="0" width="1000.00"/s', $html);
        // The adapter call ran from 0.5 s to 0.9 s.
        $this->assertMatchesRegularExpression('/data-event-id="n.dev.2".*?<rect class="ok" x="500.00" y="0" width="400.00"/s', $html);
        $this->assertMatchesRegularExpression('/data-event-id="n.dev.3".*?<rect class="error"/s', $html);
        $this->assertStringNotContainsString('<script>', $html);
        $this->assertStringContainsString('3 event(s)', $html);
    }
}
