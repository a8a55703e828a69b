#include "core/lineage.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <random>

namespace beds {
namespace {

// Random bits come from a per-thread engine seeded once from the OS: ids need uniqueness, not
// unpredictability, and a syscall per id would cost more than the rest of a ping.
uint64_t RandomBits() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine();
}

}  // namespace

std::string NewGuid() {
  // RFC 9562 method 1: a 12-bit counter in rand_a keeps ids from one process monotonic within a
  // millisecond; the counter starts at a random value each millisecond.
  static std::atomic<uint64_t> last{0};  // (ms << 12) | counter
  const uint64_t now_ms = static_cast<uint64_t>(NowUnixMs());
  uint64_t prev = last.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    const uint64_t prev_ms = prev >> 12;
    if (now_ms > prev_ms) {
      next = (now_ms << 12) | (RandomBits() & 0x7ff);  // leave headroom for the counter
    } else {
      next = prev + 1;  // same (or earlier: clock stepped back) millisecond: count on
    }
  } while (!last.compare_exchange_weak(prev, next, std::memory_order_relaxed));

  const uint64_t ms = next >> 12;
  const uint64_t counter = next & 0xfff;
  const uint64_t hi = (ms << 16) | (0x7ULL << 12) | counter;                    // version 7
  const uint64_t lo = (RandomBits() & 0x3fffffffffffffffULL) | (0x2ULL << 62);  // variant 10
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[i] = kHex[(hi >> (60 - 4 * i)) & 0xf];
    out[16 + i] = kHex[(lo >> (60 - 4 * i)) & 0xf];
  }
  return out;
}

std::string NewEventId(std::string_view node, std::string_view env) {
  std::string id;
  id.reserve(node.size() + env.size() + 34);
  id.append(node).append(".").append(env).append(".").append(NewGuid());
  return id;
}

bool IsEventId(std::string_view id) {
  auto label_ok = [](std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      if (!ok) return false;
    }
    return true;
  };
  const size_t a = id.find('.');
  if (a == std::string_view::npos) return false;
  const size_t b = id.find('.', a + 1);
  if (b == std::string_view::npos) return false;
  const std::string_view guid = id.substr(b + 1);
  if (guid.size() != 32) return false;
  for (char c : guid) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return label_ok(id.substr(0, a)) && label_ok(id.substr(a + 1, b - a - 1));
}

Lineage RootLineage(std::string_view node, std::string_view env) {
  return Lineage{NewEventId(node, env), "", 0};
}

Lineage ChildLineage(const Lineage& parent, std::string_view node, std::string_view env) {
  return Lineage{NewEventId(node, env), parent.event_id, parent.depth + 1};
}

}  // namespace beds
