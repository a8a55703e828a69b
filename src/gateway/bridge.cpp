#include "gateway/bridge.hpp"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "core/backoff.hpp"
#include "core/clock.hpp"

namespace beds::gateway {
namespace {

using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

// How long a lane's client retries a lost connection before its calls are answered UNAVAILABLE:
// an HTTP client is better told at once than kept waiting out its deadline.
constexpr auto kReconnectWindow = 2s;

struct Job {
  std::string routing_key;
  std::string envelope;
  bool write = false;
  std::string actor;
  SteadyTime deadline;
  std::chrono::milliseconds timeout{0};
  Bridge::Done done;
};

}  // namespace

struct Bridge::Lane {
  Lane(const config::AmqpSettings& a, int i) : amqp(a), index(i) {
    thread = std::jthread([this](std::stop_token stop) { Run(stop); });
  }
  ~Lane() {
    thread.request_stop();
    Wake();
    if (thread.joinable()) thread.join();
    close(wake);
  }

  void Add(Job job) {
    bool first = false;
    {
      std::lock_guard lock(mutex);
      first = inbox.empty();
      inbox.push_back(std::move(job));
    }
    // A busy lane has a wake-up pending already: one per batch of calls, not one per call.
    if (first) Wake();
  }

  void Wake() const {
    const uint64_t one = 1;
    // A full counter (never, at 2^64 - 2) still leaves the fd readable: the lane wakes anyway.
    (void)!write(wake, &one, sizeof one);
  }

  void Run(std::stop_token stop);
  // Answers every call in `jobs` and `waiting` with `error`.
  void FailAll(std::vector<Job>& jobs, std::map<std::string, Job>& waiting, const Error& error);

  const config::AmqpSettings amqp;
  const int index;
  const int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::mutex mutex;
  std::vector<Job> inbox;  // guarded by mutex
  std::atomic<bool> connected{false};
  std::jthread thread;  // last: starts once the members above are ready
};

void Bridge::Lane::FailAll(std::vector<Job>& jobs, std::map<std::string, Job>& waiting,
                           const Error& error) {
  for (Job& j : jobs) j.done(std::unexpected(error));
  jobs.clear();
  for (auto& [id, j] : waiting) j.done(std::unexpected(error));
  waiting.clear();
}

void Bridge::Lane::Run(std::stop_token stop) {
  const std::string name = "gateway/" + std::to_string(index);
  pthread_setname_np(pthread_self(), name.c_str());
  std::unique_ptr<client::Client> client;
  std::map<std::string, Job> waiting;  // by correlation id
  std::vector<Job> jobs;
  Backoff backoff(100ms, 2s);
  while (!stop.stop_requested()) {
    uint64_t ignored = 0;
    (void)!read(wake, &ignored, sizeof ignored);  // before taking the inbox: no wake-up is lost
    {
      std::lock_guard lock(mutex);
      jobs.swap(inbox);
    }
    if (!client) {
      auto c = client::Client::Connect(amqp);
      if (!c) {
        connected = false;
        const Error error{Code::kUnavailable,
                          "the gateway cannot reach the broker: " + c.error().message};
        FailAll(jobs, waiting, error);
        spdlog::warn("gateway lane {}: {} (retrying in {} ms)", index, error.message,
                     backoff.Peek().count());
        SleepUnlessStopped(stop, backoff.Next());
        continue;
      }
      client = std::move(*c);
      client->set_reconnect_window(kReconnectWindow);
      connected = true;
      backoff.Reset();
    }
    for (Job& j : jobs) {
      client::SendOptions options;
      options.delivery_mode = j.write ? 2 : 0;
      options.actor = std::move(j.actor);
      auto id = client->Send(j.routing_key, std::move(j.envelope), options);
      if (!id) {
        j.done(std::unexpected(Error{Code::kUnavailable, id.error().message}));
        continue;
      }
      waiting.emplace(std::move(*id), std::move(j));
    }
    jobs.clear();

    const SteadyTime now = std::chrono::steady_clock::now();
    auto wait = std::chrono::milliseconds(1000);
    for (auto it = waiting.begin(); it != waiting.end();) {
      if (it->second.deadline <= now) {
        client->Forget(it->first);
        it->second.done(std::unexpected(
            Error{Code::kTimeout, "no reply within " + std::to_string(it->second.timeout.count()) +
                                      " ms (X-Beds-Deadline-Ms, or [gateway] timeout_ms)"}));
        it = waiting.erase(it);
        continue;
      }
      wait =
          std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(it->second.deadline - now));
      ++it;
    }
    // Every reply that has arrived, then back to the inbox.
    for (auto timeout = wait;; timeout = std::chrono::milliseconds(0)) {
      auto reply = client->ReceiveOrWake(timeout, wake);
      if (!reply) {
        // The client gave up reconnecting: what waited is answered, the next call reconnects.
        connected = false;
        FailAll(jobs, waiting, Error{Code::kUnavailable, reply.error().message});
        client.reset();
        break;
      }
      if (!*reply) break;
      auto it = waiting.find((*reply)->correlation_id);
      if (it == waiting.end()) continue;
      it->second.done(std::move((*reply)->body));
      waiting.erase(it);
    }
  }
  {
    std::lock_guard lock(mutex);
    jobs.swap(inbox);
  }
  FailAll(jobs, waiting, Error{Code::kUnavailable, "the gateway is stopping"});
}

Bridge::Bridge(const config::AmqpSettings& amqp, int lanes) {
  for (int i = 0; i < lanes; ++i) lanes_.push_back(std::make_unique<Lane>(amqp, i));
}

Bridge::~Bridge() = default;

void Bridge::Call(std::string routing_key, std::string envelope, bool write, std::string actor,
                  std::chrono::milliseconds timeout, Done done) {
  Lane& lane = *lanes_[next_.fetch_add(1, std::memory_order_relaxed) % lanes_.size()];
  lane.Add(Job{std::move(routing_key), std::move(envelope), write, std::move(actor),
               std::chrono::steady_clock::now() + timeout, timeout, std::move(done)});
}

bool Bridge::Connected() const {
  for (const auto& lane : lanes_) {
    if (lane->connected) return true;
  }
  return false;
}

}  // namespace beds::gateway
