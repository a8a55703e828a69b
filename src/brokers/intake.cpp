#include "brokers/intake.hpp"

#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "core/backoff.hpp"

namespace beds::brokers {
namespace {

using namespace std::chrono_literals;

// How many deliveries one round reads before it deals them.
constexpr int kReadAtMost = 256;
// How long an idle intake waits before it looks at its connection again (heartbeats, a stop).
constexpr int kIdleWaitMs = 200;
// How long an ack may wait for the deliveries before it to be settled too, so that one
// multiple-ack covers them all; past it (or with half the window waiting) it is sent alone.
constexpr auto kAckAtMost = 2ms;
// How long OpenConsumer waits for the pool's connection (a worker asks again after its backoff).
constexpr auto kLaneWait = 5s;
// A test's in-memory channel has no socket to wait on: its Next waits this long instead.
constexpr auto kChannelWait = 1ms;

// One worker's lane. Its fields are guarded by Shared::lanes_mutex, except `generation`, which is
// set before the lane is shared and never changes.
struct LaneState {
  uint64_t generation = 0;           // the connection its delivery tags belong to
  std::deque<amqp::Delivery> inbox;  // dealt, not taken yet
  // Taken by the worker and not settled yet, by tag, with the order it took them in: a delivery
  // passed on from a closed lane may carry a lower tag than one taken before it, and a
  // multiple-ack, as on a channel of its own, settles what was taken up to the acked one.
  std::map<uint64_t, uint64_t> taken;
  uint64_t takes = 0;
  bool broken = false;  // its connection is gone
  std::condition_variable dealt;
  size_t Load() const { return inbox.size() + taken.size(); }
};

}  // namespace

// Two locks, never nested the other way round: `io` (the connection, which rabbitmq-c lets one
// thread use at a time, and the acks) before `lanes_mutex` (who holds which delivery). The
// workers write their replies and acks on the connection themselves, under `io`, so the intake
// thread wakes only for what arrives.
struct Intake::Shared {
  Shared(Clock& c, size_t w)
      : clock(c), window(w), wake_fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (wake_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  ~Shared() { ::close(wake_fd); }

  Clock& clock;
  const size_t window;  // the consumer's prefetch

  // Under io.
  std::mutex io;
  amqp::Channel* channel = nullptr;  // the intake thread's, while connected
  std::set<uint64_t> outstanding;    // delivered on it, not settled
  std::set<uint64_t> acks;           // settled, waiting for a multiple-ack
  std::chrono::steady_clock::time_point acks_since;

  // Under both to change, under either to read.
  uint64_t generation = 0;  // counts the connections made

  // Under lanes_mutex.
  std::mutex lanes_mutex;
  std::condition_variable connected_changed;
  bool connected = false;
  bool closing = false;  // RequestStop: no more lanes, the consumer is cancelled
  std::vector<std::shared_ptr<LaneState>> lanes;
  std::deque<amqp::Delivery> returned;  // a closed lane's deliveries its worker never took

  // Lock-free: set by anyone, read by the intake thread before it sleeps.
  std::atomic<bool> failed{false};   // a write broke the connection
  std::atomic<bool> asleep{false};   // the intake thread waits in poll(): write wake_fd
  std::atomic<bool> idle{false};     // ... and may wait long (kIdleWaitMs)
  std::atomic<bool> waiting{false};  // deliveries wait for room in a lane
  const int wake_fd;

  void Wake() {
    if (!asleep.exchange(false)) return;
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof one);
  }

  // Under io: a write failed; the intake thread reconnects.
  Result<void> Failed(Result<void> r) {
    if (!r) {
      failed = true;
      Wake();
    }
    return r;
  }

  // Under io: acks what can be acked. Every settled delivery below the oldest one still being
  // worked on goes in one multiple-ack; the rest wait for it a little (kAckAtMost), then go
  // alone, so a slow request never holds the others' acks, nor the prefetch window.
  Result<void> Settle(bool force) {
    if (acks.empty() || !channel) return Ok();
    const auto now = clock.Now();
    if (acks_since == std::chrono::steady_clock::time_point{}) acks_since = now;
    for (uint64_t tag : acks) outstanding.erase(tag);
    const uint64_t oldest =
        outstanding.empty() ? std::numeric_limits<uint64_t>::max() : *outstanding.begin();
    const auto below = acks.lower_bound(oldest);
    if (below != acks.begin()) {
      if (auto r = channel->Ack(*std::prev(below), true); !r) return Failed(r);
      acks.erase(acks.begin(), below);
    }
    if (!acks.empty() && (force || now - acks_since >= kAckAtMost || acks.size() * 2 >= window)) {
      for (uint64_t tag : acks) {
        if (auto r = channel->Ack(tag, false); !r) return Failed(r);
      }
      acks.clear();
    }
    if (acks.empty()) acks_since = {};
    return Ok();
  }
};

// A worker's channel: deliveries dealt to it; what it answers goes straight to the connection.
class Intake::Lane final : public amqp::Channel {
 public:
  Lane(std::shared_ptr<Shared> shared, std::shared_ptr<LaneState> state)
      : shared_(std::move(shared)), state_(std::move(state)) {}

  ~Lane() override {
    // What the worker answered and held goes out: its deliveries are no longer in `taken`.
    (void)Coalesce(false);
    std::vector<uint64_t> taken;
    {
      std::lock_guard lock(shared_->lanes_mutex);
      std::erase(shared_->lanes, state_);
      // A broken lane's deliveries went back to the queue with its connection.
      if (state_->broken) return;
      // Not taken yet: another worker's.
      for (auto it = state_->inbox.rbegin(); it != state_->inbox.rend(); ++it) {
        shared_->returned.push_front(std::move(*it));
      }
      for (const auto& [tag, order] : state_->taken) taken.push_back(tag);
    }
    // Taken and not settled (the worker died): back to the queue, marked redelivered.
    std::lock_guard io(shared_->io);
    if (shared_->channel && state_->generation == shared_->generation) {
      for (uint64_t tag : taken) {
        if (!shared_->Failed(shared_->channel->Reject(tag, true))) break;
        shared_->outstanding.erase(tag);
      }
    }
    shared_->Wake();
  }

  Result<std::optional<amqp::Delivery>> Next(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(shared_->lanes_mutex);
    // Not even a zero wait: a timed futex wait whose time has passed still sleeps for the
    // thread's timer slack (50 µs by default), and a cycle asks Next(0ms) once per delivery.
    if (timeout > std::chrono::milliseconds::zero()) {
      state_->dealt.wait_for(lock, timeout,
                             [&] { return state_->broken || !state_->inbox.empty(); });
    }
    if (state_->broken) return Broken();
    if (state_->inbox.empty()) return std::nullopt;
    amqp::Delivery d = std::move(state_->inbox.front());
    state_->inbox.pop_front();
    state_->taken.emplace(d.delivery_tag, ++state_->takes);
    return d;
  }

  Result<void> Publish(const std::string& exchange, const std::string& routing_key,
                       const amqp::Message& message) override {
    if (holding_) {
      held_.push_back(amqp::Publication{exchange, routing_key, message, false});
      return Ok();
    }
    std::lock_guard io(shared_->io);
    if (!Live()) return Broken();
    return shared_->Failed(shared_->channel->Publish(exchange, routing_key, message));
  }

  // Lanes do not confirm: what must be stored goes through Links::OpenConfirmed.
  Result<void> PublishMany(const std::vector<amqp::Publication>& batch,
                           std::vector<std::string>* /*unroutable*/) override {
    for (const auto& p : batch) {
      if (auto r = Publish(p.exchange, p.routing_key, p.message); !r) return r;
    }
    return Ok();
  }

  Result<void> Ack(uint64_t delivery_tag, bool multiple) override {
    std::vector<uint64_t> tags;
    {
      std::lock_guard lock(shared_->lanes_mutex);
      if (state_->broken) return Broken();
      if (!state_->taken.contains(delivery_tag)) return Unknown(delivery_tag);
      if (multiple) {
        // Only this lane's (the other lanes' are not this worker's to settle), and only those
        // it took up to this one.
        const uint64_t upto = state_->taken.at(delivery_tag);
        std::erase_if(state_->taken, [&](const auto& entry) {
          if (entry.second > upto) return false;
          tags.push_back(entry.first);
          return true;
        });
      } else {
        tags.push_back(delivery_tag);
        state_->taken.erase(delivery_tag);
      }
    }
    if (holding_) {
      held_acks_.insert(held_acks_.end(), tags.begin(), tags.end());
      return Ok();
    }
    std::lock_guard io(shared_->io);
    if (!Live()) return Broken();
    return Acked(tags);
  }

  // Held: the worker's answers wait here, unlocked, and leave in one write under the lock.
  Result<void> Coalesce(bool on) override {
    holding_ = on;
    if (on || (held_.empty() && held_acks_.empty())) return Ok();
    const std::vector<amqp::Publication> publications = std::move(held_);
    const std::vector<uint64_t> acks = std::move(held_acks_);
    held_.clear();
    held_acks_.clear();
    std::lock_guard io(shared_->io);
    if (!Live()) return Broken();
    amqp::Channel& channel = *shared_->channel;
    Result<void> written = channel.Coalesce(true);
    for (const amqp::Publication& p : publications) {
      if (!written) break;
      written = channel.Publish(p.exchange, p.routing_key, p.message);
    }
    if (written && !acks.empty()) written = Acked(acks);
    Result<void> sent = channel.Coalesce(false);
    if (!written) return shared_->Failed(written);
    return shared_->Failed(sent);
  }

  Result<void> Reject(uint64_t delivery_tag, bool requeue) override {
    {
      std::lock_guard lock(shared_->lanes_mutex);
      if (state_->broken) return Broken();
      if (!state_->taken.erase(delivery_tag)) return Unknown(delivery_tag);
    }
    std::lock_guard io(shared_->io);
    if (!Live()) return Broken();
    shared_->outstanding.erase(delivery_tag);
    if (shared_->waiting) shared_->Wake();  // room in this lane
    return shared_->Failed(shared_->channel->Reject(delivery_tag, requeue));
  }

  // The intake's consumer is cancelled by the pool as a whole.
  Result<void> Cancel(const std::string&) override { return Ok(); }

 private:
  // Under io: the connection this lane's tags belong to is still the open one.
  bool Live() const { return shared_->channel && state_->generation == shared_->generation; }
  // Under io: the worker settled these deliveries.
  Result<void> Acked(const std::vector<uint64_t>& tags) {
    shared_->acks.insert(tags.begin(), tags.end());
    auto settled = shared_->Settle(false);
    // Room for what waits to be dealt, or acks left for the intake to send once they have waited.
    if (shared_->waiting || (shared_->idle && !shared_->acks.empty())) shared_->Wake();
    return settled;
  }
  static std::unexpected<Error> Broken() {
    return Fail(Code::kUnavailable, "the pool's connection to the broker was lost");
  }
  static std::unexpected<Error> Unknown(uint64_t tag) {
    return Fail(Code::kInternal, "delivery " + std::to_string(tag) + " is not this worker's");
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<LaneState> state_;
  // The worker's own (a lane is used from its thread only): what it holds while it coalesces.
  bool holding_ = false;
  std::vector<amqp::Publication> held_;
  std::vector<uint64_t> held_acks_;
};

namespace {

// The consumer's prefetch: the broker counts it per consumer, and the pool's one consumer holds
// every worker's share.
size_t WindowOf(const config::BrokerSettings& broker) {
  return static_cast<size_t>(
      std::min(65535, std::max(1, broker.instances) * std::max(1, broker.prefetch)));
}

}  // namespace

Intake::Intake(const config::BrokerSettings& broker, Links& links, Clock& clock,
               std::shared_ptr<Handler> quick, PoolCounters& counters)
    : broker_(broker),
      links_(links),
      clock_(clock),
      quick_(std::move(quick)),
      counters_(counters),
      shared_(std::make_shared<Shared>(clock, WindowOf(broker))) {}

Intake::~Intake() { Stop(); }

void Intake::Start() {
  thread_ = std::jthread([this](std::stop_token stop) { Main(stop); });
}

void Intake::RequestStop() {
  {
    std::lock_guard lock(shared_->lanes_mutex);
    shared_->closing = true;
    shared_->connected_changed.notify_all();
  }
  shared_->asleep = true;  // wake it wherever it is: it cancels the consumer
  shared_->Wake();
}

void Intake::Stop() {
  RequestStop();
  thread_.request_stop();
  shared_->asleep = true;
  shared_->Wake();
  if (thread_.joinable()) thread_.join();
}

Result<Links::Consumer> Intake::OpenConsumer(const config::BrokerSettings& /*broker*/) {
  std::unique_lock lock(shared_->lanes_mutex);
  shared_->connected_changed.wait_for(lock, kLaneWait,
                                      [&] { return shared_->connected || shared_->closing; });
  if (shared_->closing) return Fail(Code::kUnavailable, "the pool is stopping");
  if (!shared_->connected) {
    return Fail(Code::kUnavailable, "the pool's connection to the broker is not up");
  }
  auto state = std::make_shared<LaneState>();
  state->generation = shared_->generation;
  shared_->lanes.push_back(state);
  if (shared_->waiting) shared_->Wake();  // a new lane has room
  return Consumer{std::make_unique<Lane>(shared_, std::move(state)), "lane"};
}

void Intake::Main(std::stop_token stop) {
  const std::string name = broker_.name.substr(0, 10) + "/in";
  pthread_setname_np(pthread_self(), name.c_str());
  config::BrokerSettings shape = broker_;
  shape.prefetch = static_cast<int>(shared_->window);
  const size_t lane_room = static_cast<size_t>(std::max(1, broker_.prefetch));
  Shared& shared = *shared_;
  Backoff backoff(100ms, 5s);
  int failures = 0;
  bool lost = false;
  std::unique_ptr<amqp::Channel> channel;
  std::string consumer_tag;
  int fd = -1;
  bool cancelled = false;
  // Not dealt yet (every lane is full), each with whether it merges with others
  // (Handler::Mergeable).
  std::deque<std::pair<amqp::Delivery, bool>> waiting;
  std::vector<amqp::Delivery> arrived;
  std::vector<std::pair<amqp::Message, uint64_t>> quick_replies;  // reply, request tag
  size_t next_lane = 0;

  // Closes the connection, which hands every unacked delivery back to the broker, and breaks
  // every lane on it (the older ones broke with theirs).
  auto disconnect = [&] {
    waiting.clear();
    std::unique_ptr<amqp::Channel> gone;  // closed outside the locks
    std::lock_guard io(shared.io);
    std::lock_guard lock(shared.lanes_mutex);
    gone = std::move(channel);
    shared.channel = nullptr;
    shared.outstanding.clear();
    shared.acks.clear();
    shared.acks_since = {};
    shared.failed = false;
    shared.connected = false;
    shared.returned.clear();
    for (auto& lane : shared.lanes) {
      if (lane->generation != shared.generation) continue;
      lane->broken = true;
      lane->dealt.notify_all();
    }
  };
  auto lose = [&](const std::string& why) {
    spdlog::warn("broker {} intake: {}", broker_.name, why);
    lost = true;
    disconnect();
  };

  // The least busy lane of this connection with room, or null. Ties go round the lanes, so
  // equal work spreads over the workers. Under lanes_mutex.
  auto lane_for = [&]() -> LaneState* {
    LaneState* best = nullptr;
    const size_t n = shared.lanes.size();
    for (size_t i = 0; i < n; ++i) {
      LaneState* lane = shared.lanes[(next_lane + i) % n].get();
      if (lane->broken || lane->generation != shared.generation) continue;
      if (lane->Load() >= lane_room) continue;
      if (!best || lane->Load() < best->Load()) best = lane;
    }
    if (best) ++next_lane;
    return best;
  };

  while (true) {
    const bool stopping = stop.stop_requested();
    if (!channel) {
      if (stopping) break;
      auto consumer = links_.OpenConsumer(shape);
      if (!consumer) {
        if (failures++ % 10 == 0) {
          spdlog::warn("broker {} intake: {} (retrying in {} ms)", broker_.name,
                       consumer.error().message, backoff.Peek().count());
        }
        clock_.Sleep(stop, backoff.Next());
        continue;
      }
      // The workers count the reconnects, each as its lane opens again.
      if (failures > 0 || lost) spdlog::info("broker {} intake: connected again", broker_.name);
      failures = 0;
      lost = false;
      cancelled = false;
      backoff.Reset();
      channel = std::move(consumer->channel);
      consumer_tag = std::move(consumer->tag);
      fd = channel->fd();
      std::lock_guard io(shared.io);
      std::lock_guard lock(shared.lanes_mutex);
      shared.channel = channel.get();
      ++shared.generation;
      shared.connected = true;
      shared.connected_changed.notify_all();
    }
    if (shared.failed) {
      lose("a worker's write failed");
      continue;
    }
    bool closing = false;
    {
      std::lock_guard lock(shared.lanes_mutex);
      closing = shared.closing;
    }

    // 1. Read what has arrived (and, once the pool stops, cancel the consumer).
    std::optional<Error> broke;
    {
      std::lock_guard io(shared.io);
      if (closing && !cancelled) {
        // Nothing new: what was prefetched and not dealt goes back when the connection closes.
        // A round trip under the lock, once, at shutdown: the workers' last answers wait for it.
        if (auto r = channel->Cancel(consumer_tag); !r) broke = r.error();
        cancelled = true;
      }
      for (int n = 0; n < kReadAtMost && !stopping && !broke; ++n) {
        auto next = channel->Next(0ms);
        if (!next) {
          broke = next.error();
          break;
        }
        if (!*next) break;
        if ((*next)->returned) continue;  // nothing the pool publishes is returnable
        shared.outstanding.insert((*next)->delivery_tag);
        arrived.push_back(std::move(**next));
      }
    }
    if (broke) {
      arrived.clear();
      lose(broke->message);
      continue;
    }
    const bool busy = !arrived.empty();

    // 2. Answer what can be answered at once; the rest waits for a worker.
    for (amqp::Delivery& d : arrived) {
      std::optional<std::string> reply;
      bool mergeable = false;
      if (quick_) {
        try {
          reply = quick_->Quick(d);
          if (!reply) mergeable = quick_->Mergeable(d);
        } catch (const std::exception& e) {
          spdlog::warn("broker {} intake: {} (a worker handles it)", broker_.name, e.what());
        }
      }
      if (!reply) {
        waiting.emplace_back(std::move(d), mergeable);
        continue;
      }
      counters_.consumed.fetch_add(1, std::memory_order_relaxed);
      amqp::Message m;
      m.body = std::move(*reply);
      m.correlation_id = d.message.correlation_id;
      m.reply_to = d.message.reply_to;
      quick_replies.emplace_back(std::move(m), d.delivery_tag);
    }
    arrived.clear();
    Result<void> written = Ok();
    {
      std::lock_guard io(shared.io);
      if (!quick_replies.empty()) {
        written = channel->Coalesce(true);
        for (auto& [reply, tag] : quick_replies) {
          if (!written) break;
          if (!reply.reply_to.empty()) {
            const std::string to = std::move(reply.reply_to);
            reply.reply_to.clear();
            if (written = channel->Publish("", to, reply); !written) break;
          }
          shared.acks.insert(tag);
          counters_.acked.fetch_add(1, std::memory_order_relaxed);
        }
        if (written) written = shared.Settle(false);
        Result<void> sent = channel->Coalesce(false);
        if (written) written = sent;
      }
      // Acks that have waited long enough for the older deliveries; all of them at the end.
      if (written) written = shared.Settle(stopping);
    }
    quick_replies.clear();
    if (!written) {
      lose(written.error().message);
      continue;
    }

    // 3. Deal.
    {
      std::lock_guard lock(shared.lanes_mutex);
      while (!shared.returned.empty()) {
        waiting.emplace_front(std::move(shared.returned.back()), false);
        shared.returned.pop_back();
      }
      // Mergeable deliveries that arrived together go to one lane, so they meet in one worker's
      // cycle (point reads: one query). The others are shared among the idle workers (a fan-out
      // of procedure calls is not run one after another while workers wait), or each goes to
      // the least busy when at most one is idle.
      size_t idle = 0;
      size_t others = 0;
      for (const auto& l : shared.lanes) {
        idle += !l->broken && l->generation == shared.generation && l->Load() == 0;
      }
      for (const auto& [d, mergeable] : waiting) others += !mergeable;
      // Chunks for the idle lanes; past them (or with one idle at most), one at a time to the
      // least busy, as a slot frees nowhere else.
      const size_t chunk = idle > 1 ? (others + idle - 1) / idle : 1;
      LaneState* merging = nullptr;
      LaneState* lane = nullptr;
      size_t given = 0;
      while (!waiting.empty()) {
        LaneState* to = nullptr;
        if (waiting.front().second) {
          if (!merging || merging->Load() >= lane_room) merging = lane_for();
          to = merging;
        } else {
          if (!lane || given >= chunk || lane->Load() >= lane_room) {
            lane = lane_for();
            given = 0;
          }
          to = lane;
          ++given;
        }
        if (!to) break;
        const bool was_empty = to->inbox.empty();
        to->inbox.push_back(std::move(waiting.front().first));
        waiting.pop_front();
        if (was_empty) to->dealt.notify_one();
      }
      shared.waiting = !waiting.empty();
    }
    // The workers have ended and their last answers are written: close (the broker requeues
    // what is left).
    if (stopping) break;
    if (busy) continue;

    // 4. Nothing arrived: wait for the broker, or for a lane handing deliveries back, making
    // room for those waiting, or leaving acks to send.
    if (fd < 0) {
      // A test's channel has no socket: wait in it.
      {
        std::lock_guard io(shared.io);
        auto next = channel->Next(kChannelWait);
        if (!next) {
          broke = next.error();
        } else if (*next && !(*next)->returned) {
          shared.outstanding.insert((*next)->delivery_tag);
          arrived.push_back(std::move(**next));
        }
      }
      if (broke) lose(broke->message);
      continue;
    }
    // Said before looking, so that a worker who changes something after the look wakes us.
    shared.asleep = true;
    shared.idle = true;
    bool buffered = false;
    bool acks_waiting = false;
    {
      std::lock_guard io(shared.io);
      buffered = channel->Buffered();
      acks_waiting = !shared.acks.empty();
    }
    if (buffered) {
      shared.asleep = false;
      shared.idle = false;
      continue;
    }
    {
      std::lock_guard lock(shared.lanes_mutex);
      if (!shared.returned.empty() || (shared.closing && !cancelled) || shared.failed) {
        shared.asleep = false;
        shared.idle = false;
        continue;
      }
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {shared.wake_fd, POLLIN, 0}};
    (void)::poll(fds, 2, acks_waiting ? static_cast<int>(kAckAtMost.count()) : kIdleWaitMs);
    shared.asleep = false;
    shared.idle = false;
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      (void)!::read(shared.wake_fd, &count, sizeof count);
    }
  }
  disconnect();
}

}  // namespace beds::brokers
