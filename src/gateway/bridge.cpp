#include "gateway/bridge.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "core/backoff.hpp"

namespace beds::gateway {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

// rabbitmq-c sends our heartbeats only while it reads: the connection is read at least this often.
constexpr auto kServiceEvery = 1s;

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

// Everything here is touched on the io_context's thread only, except `connector`, which posts its
// result there. Handlers hold a plain pointer: the Bridge is destroyed only after its io_context
// has stopped, so none of them runs after it.
struct Bridge::State {
  State(asio::io_context& io, const config::AmqpSettings& a, int i, std::atomic<bool>& up)
      : ioc(io), amqp(a), index(i), connected(up), watch(io), tick(io) {}

  // Answers `job` with `result` from a handler of its own: never from inside Call.
  void Answer(Job job, Result<std::string> result) {
    asio::post(ioc, [done = std::move(job.done), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  }
  void Send(Job job);
  // Starts a connect on the connector thread unless one runs.
  void Connect();
  void Connected(Result<std::unique_ptr<client::Client>> made);
  // The connection broke: what waits is answered UNAVAILABLE and a new one is made.
  void Lost(const Error& error);
  // Waits for the socket to be readable, then Drain.
  void Watch();
  // Every reply that has arrived.
  void Drain();
  // Deadlines passed, heartbeats served, the next tick armed.
  void Tick();
  void ArmTick(SteadyTime at);

  asio::io_context& ioc;
  const config::AmqpSettings amqp;
  const int index;
  std::atomic<bool>& connected;
  std::unique_ptr<client::Client> client;
  asio::posix::stream_descriptor watch;  // the client's socket, not owned: released, not closed
  bool watching = false;
  std::map<std::string, Job> waiting;  // by correlation id
  std::vector<Job> queued;             // arrived while connecting
  bool connecting = false;
  std::string last_error = "not connected yet";
  Backoff backoff{100ms, 2s};
  asio::steady_timer tick;
  SteadyTime tick_at = SteadyTime::max();
  std::jthread connector;
};

void Bridge::State::Connect() {
  if (connecting) return;
  connecting = true;
  if (connector.joinable()) connector.join();  // the last attempt has handed over its result
  connector = std::jthread([this] {
    auto made = client::Client::Connect(amqp);
    asio::post(ioc, [this, made = std::move(made)]() mutable { Connected(std::move(made)); });
  });
}

void Bridge::State::Connected(Result<std::unique_ptr<client::Client>> made) {
  connecting = false;
  if (!made) {
    last_error = made.error().message;
    const Error error{Code::kUnavailable, "the gateway cannot reach the broker: " + last_error};
    for (Job& j : queued) Answer(std::move(j), std::unexpected(error));
    queued.clear();
    spdlog::warn("gateway lane {}: {} (retrying in {} ms)", index, error.message,
                 backoff.Peek().count());
    ArmTick(std::chrono::steady_clock::now() + backoff.Next());
    return;
  }
  client = std::move(*made);
  // A broken connection is this loop's to replace (in the background), never the client's to
  // retry in place: that would block every HTTP request of this thread meanwhile.
  client->set_reconnect_window(0ms);
  boost::system::error_code ec;
  watch.assign(client->fd(), ec);
  if (ec) {
    Lost(Error{Code::kUnavailable, "watching the broker connection: " + ec.message()});
    return;
  }
  connected = true;
  backoff.Reset();
  std::vector<Job> jobs;
  jobs.swap(queued);
  for (Job& j : jobs) Send(std::move(j));
  Watch();
  ArmTick(std::chrono::steady_clock::now() + kServiceEvery);
}

void Bridge::State::Lost(const Error& error) {
  connected = false;
  last_error = error.message;
  if (watch.is_open()) {
    watch.cancel();
    (void)watch.release();  // the client owns (and closes) the socket
  }
  watching = false;
  client.reset();
  for (auto& [id, j] : waiting) Answer(std::move(j), std::unexpected(error));
  waiting.clear();
  spdlog::warn("gateway lane {}: {}; reconnecting", index, error.message);
  Connect();
}

void Bridge::State::Send(Job job) {
  if (!client) {
    queued.push_back(std::move(job));
    Connect();
    return;
  }
  client::SendOptions options;
  options.delivery_mode = job.write ? 2 : 0;
  options.actor = std::move(job.actor);
  auto id = client->Send(job.routing_key, std::move(job.envelope), options);
  if (!id) {
    const Error error{Code::kUnavailable, id.error().message};
    Answer(std::move(job), std::unexpected(error));
    Lost(error);
    return;
  }
  const SteadyTime deadline = job.deadline;
  waiting.emplace(std::move(*id), std::move(job));
  if (deadline < tick_at) ArmTick(deadline);
}

void Bridge::State::Watch() {
  if (watching || !client) return;
  watching = true;
  watch.async_wait(asio::posix::stream_descriptor::wait_read,
                   [this](const boost::system::error_code& ec) {
                     watching = false;
                     if (ec || !client) return;  // cancelled: the connection was replaced
                     Drain();
                     Watch();
                   });
}

void Bridge::State::Drain() {
  while (client) {
    auto reply = client->Poll();
    if (!reply) {
      Lost(Error{Code::kUnavailable, "lost the broker: " + reply.error().message});
      return;
    }
    if (!*reply) return;
    auto it = waiting.find((*reply)->correlation_id);
    if (it == waiting.end()) continue;
    Answer(std::move(it->second), std::move((*reply)->body));
    waiting.erase(it);
  }
}

void Bridge::State::ArmTick(SteadyTime at) {
  tick_at = at;
  tick.expires_at(at);
  tick.async_wait([this, at](const boost::system::error_code& ec) {
    if (ec || at != tick_at) return;  // re-armed for another time meanwhile
    tick_at = SteadyTime::max();
    Tick();
  });
}

void Bridge::State::Tick() {
  if (!client) {
    // Back off between attempts; a request arriving meanwhile starts one at once.
    if (!connecting) Connect();
    return;
  }
  Drain();  // also serves heartbeats
  if (!client) return;
  const SteadyTime now = std::chrono::steady_clock::now();
  SteadyTime next = now + kServiceEvery;
  for (auto it = waiting.begin(); it != waiting.end();) {
    Job& j = it->second;
    if (j.deadline <= now) {
      client->Forget(it->first);
      Answer(std::move(j),
             std::unexpected(
                 Error{Code::kTimeout, "no reply within " + std::to_string(j.timeout.count()) +
                                           " ms (X-Beds-Deadline-Ms, or [gateway] timeout_ms)"}));
      it = waiting.erase(it);
      continue;
    }
    next = std::min(next, j.deadline);
    ++it;
  }
  ArmTick(next);
}

Bridge::Bridge(asio::io_context& ioc, const config::AmqpSettings& amqp, int index)
    : state_(std::make_unique<State>(ioc, amqp, index, connected_)) {
  asio::post(ioc, [s = state_.get()] { s->Connect(); });
}

Bridge::~Bridge() {
  State& s = *state_;
  if (s.connector.joinable()) s.connector.join();
  if (s.watch.is_open()) (void)s.watch.release();
}

void Bridge::Call(std::string routing_key, std::string envelope, bool write, std::string actor,
                  std::chrono::milliseconds timeout, Done done) {
  state_->Send(Job{std::move(routing_key), std::move(envelope), write, std::move(actor),
                   std::chrono::steady_clock::now() + timeout, timeout, std::move(done)});
}

}  // namespace beds::gateway
