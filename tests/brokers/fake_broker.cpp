#include "brokers/fake_broker.hpp"

#include <algorithm>
#include <thread>

namespace beds::brokers::testing {

// The consuming channel: deliveries up to the broker's prefetch, replies, acks and rejects.
class FakeBroker::ConsumerChannel final : public amqp::Channel {
 public:
  ConsumerChannel(FakeBroker& broker, int id, int prefetch)
      : broker_(broker), id_(id), prefetch_(static_cast<size_t>(prefetch)) {}

  // A closed channel hands its unacked deliveries back, marked redelivered, in tag order.
  ~ConsumerChannel() override {
    std::lock_guard lock(broker_.mutex_);
    auto& mine = broker_.unacked_[id_];
    for (auto it = mine.rbegin(); it != mine.rend(); ++it) {
      it->second.redelivered = true;
      broker_.ready_.push_front(std::move(it->second));
    }
    broker_.unacked_.erase(id_);
    broker_.changed_.notify_all();
  }

  Result<std::optional<amqp::Delivery>> Next(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(broker_.mutex_);
    auto& mine = broker_.unacked_[id_];
    const bool got = broker_.changed_.wait_for(lock, timeout, [&] {
      return broker_.break_consumer_ || (!broker_.ready_.empty() && mine.size() < prefetch_);
    });
    if (broker_.break_consumer_) {
      broker_.break_consumer_ = false;
      return Fail(Code::kUnavailable, "connection reset by the fake broker");
    }
    if (!got) return std::nullopt;
    amqp::Delivery d = std::move(broker_.ready_.front());
    broker_.ready_.pop_front();
    d.delivery_tag = ++last_tag_;
    mine.emplace(d.delivery_tag, d);
    return d;
  }

  Result<void> Publish(const std::string& exchange, const std::string& routing_key,
                       const amqp::Message& message) override {
    std::lock_guard lock(broker_.mutex_);
    broker_.steps_.push_back(Step{Step::Kind::kReply, exchange, routing_key, message, 0, false});
    broker_.changed_.notify_all();
    return Ok();
  }

  Result<void> PublishMany(const std::vector<amqp::Publication>& batch,
                           std::vector<std::string>*) override {
    for (const auto& p : batch) {
      if (auto r = Publish(p.exchange, p.routing_key, p.message); !r) return r;
    }
    return Ok();
  }

  Result<void> Ack(uint64_t tag, bool multiple) override {
    std::lock_guard lock(broker_.mutex_);
    auto& mine = broker_.unacked_[id_];
    if (!mine.contains(tag))
      return Fail(Code::kUnavailable, "unknown delivery tag (channel error)");
    if (multiple) {
      mine.erase(mine.begin(), mine.upper_bound(tag));
    } else {
      mine.erase(tag);
    }
    broker_.steps_.push_back(Step{Step::Kind::kAck, "", "", {}, tag, multiple});
    broker_.changed_.notify_all();
    return Ok();
  }

  Result<void> Reject(uint64_t tag, bool requeue) override {
    std::lock_guard lock(broker_.mutex_);
    auto& mine = broker_.unacked_[id_];
    auto it = mine.find(tag);
    if (it == mine.end()) return Fail(Code::kUnavailable, "unknown delivery tag (channel error)");
    if (requeue) {
      it->second.redelivered = true;
      broker_.ready_.push_front(std::move(it->second));
    }
    mine.erase(it);
    broker_.steps_.push_back(Step{Step::Kind::kReject, "", "", {}, tag, requeue});
    broker_.changed_.notify_all();
    return Ok();
  }

  Result<void> Cancel(const std::string&) override { return Ok(); }

  Result<void> Coalesce(bool on) override {
    std::lock_guard lock(broker_.mutex_);
    broker_.steps_.push_back(Step{Step::Kind::kCoalesce, "", "", {}, 0, on});
    return Ok();
  }

 private:
  FakeBroker& broker_;
  const int id_;
  const size_t prefetch_;
  uint64_t last_tag_ = 0;
};

// The confirmed channel: stores what it is given unless told to fail or the key is unbound.
class FakeBroker::ConfirmedChannel final : public amqp::Channel {
 public:
  explicit ConfirmedChannel(FakeBroker& broker) : broker_(broker) {}

  Result<std::optional<amqp::Delivery>> Next(std::chrono::milliseconds) override {
    return std::nullopt;
  }
  Result<void> Publish(const std::string& exchange, const std::string& routing_key,
                       const amqp::Message& message) override {
    return PublishMany({amqp::Publication{exchange, routing_key, message, true}}, nullptr);
  }
  Result<void> PublishMany(const std::vector<amqp::Publication>& batch,
                           std::vector<std::string>* unroutable) override {
    std::lock_guard lock(broker_.mutex_);
    if (broker_.fail_confirms_ > 0) {
      --broker_.fail_confirms_;
      return Fail(Code::kUnavailable, "no publisher confirm (fake)");
    }
    bool returned = false;
    for (const auto& p : batch) {
      if (p.mandatory && broker_.unbound_.contains(p.routing_key)) {
        returned = true;
        if (unroutable) unroutable->push_back(p.routing_key);
        continue;
      }
      broker_.steps_.push_back(
          Step{Step::Kind::kStore, p.exchange, p.routing_key, p.message, 0, false});
    }
    ++broker_.confirm_batches_;
    broker_.changed_.notify_all();
    if (returned && !unroutable) return Fail(Code::kUnavailable, "no queue is bound (fake)");
    return Ok();
  }
  Result<void> Ack(uint64_t, bool) override { return Ok(); }
  Result<void> Reject(uint64_t, bool) override { return Ok(); }
  Result<void> Cancel(const std::string&) override { return Ok(); }

 private:
  FakeBroker& broker_;
};

void FakeBroker::Enqueue(amqp::Message message) { EnqueueAll({std::move(message)}); }

void FakeBroker::EnqueueAll(std::vector<amqp::Message> messages) {
  std::lock_guard lock(mutex_);
  for (amqp::Message& message : messages) {
    amqp::Delivery d;
    d.message = std::move(message);
    d.exchange = "beds.events";
    d.routing_key = "test.key";
    ready_.push_back(std::move(d));
  }
  changed_.notify_all();
}

void FakeBroker::FailConsumerOpens(int n) {
  std::lock_guard lock(mutex_);
  fail_consumer_opens_ = n;
}

void FakeBroker::FailConfirms(int n) {
  std::lock_guard lock(mutex_);
  fail_confirms_ = n;
}

void FakeBroker::Unbind(const std::string& key) {
  std::lock_guard lock(mutex_);
  unbound_.insert(key);
}

void FakeBroker::BreakConsumer() {
  std::lock_guard lock(mutex_);
  break_consumer_ = true;
  changed_.notify_all();
}

bool FakeBroker::WaitUntil(const std::function<bool(const FakeBroker&)>& done) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, std::chrono::seconds(5), [&] { return done(*this); });
}

size_t FakeBroker::unacked() const {
  size_t n = 0;
  for (const auto& [id, tags] : unacked_) n += tags.size();
  return n;
}

Result<Links::Consumer> FakeBroker::OpenConsumer(const config::BrokerSettings& broker) {
  std::lock_guard lock(mutex_);
  ++consumer_opens_;
  changed_.notify_all();
  if (fail_consumer_opens_ > 0) {
    --fail_consumer_opens_;
    return std::unexpected(Error{Code::kUnavailable, "connection refused (fake)"});
  }
  const int id = next_channel_++;
  unacked_[id];
  return Consumer{std::make_unique<ConsumerChannel>(*this, id, broker.prefetch), "ctag"};
}

Result<std::unique_ptr<amqp::Channel>> FakeBroker::OpenConfirmed(const config::BrokerSettings&,
                                                                 bool) {
  std::lock_guard lock(mutex_);
  ++confirmed_opens_;
  return std::unique_ptr<amqp::Channel>(std::make_unique<ConfirmedChannel>(*this));
}

std::chrono::steady_clock::time_point FakeClock::Now() const {
  std::lock_guard lock(mutex_);
  return now_;
}

bool FakeClock::Sleep(std::stop_token stop, std::chrono::milliseconds delay) {
  {
    std::lock_guard lock(mutex_);
    sleeps_.push_back(delay);
    now_ += delay;
  }
  // Let the test thread in between: a worker backing off in a loop must not starve it.
  std::this_thread::yield();
  return !stop.stop_requested();
}

void FakeClock::Advance(std::chrono::microseconds by) {
  std::lock_guard lock(mutex_);
  now_ += by;
}

std::vector<std::chrono::milliseconds> FakeClock::sleeps() const {
  std::lock_guard lock(mutex_);
  return sleeps_;
}

}  // namespace beds::brokers::testing
