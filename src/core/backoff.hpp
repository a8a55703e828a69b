// Exponential backoff between attempts at something that keeps failing (a connection, mostly).
#pragma once

#include <algorithm>
#include <chrono>

namespace beds {

// `first`, then twice the previous delay after each failure, at most `max`; Reset() after a
// success starts again from `first`. Not thread-safe: one per retrying loop.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds first, std::chrono::milliseconds max)
      : first_(first), max_(max), next_(first) {}
  // The delay to wait now; the next call returns twice it (at most max).
  std::chrono::milliseconds Next() {
    const auto delay = next_;
    next_ = std::min(next_ * 2, max_);
    return delay;
  }
  // What Next() would return, without moving on (for a log line before the wait).
  std::chrono::milliseconds Peek() const { return next_; }
  void Reset() { next_ = first_; }

 private:
  std::chrono::milliseconds first_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
};

}  // namespace beds
