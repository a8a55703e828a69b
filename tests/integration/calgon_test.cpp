// CALGON async jobs (docs/protocol.md "CALGON") end to end: the real `beds` binary with a calgon
// pool, the fixture's RabbitMQ and MariaDB, the ticket store on the node's SQLite file, and the
// exactly-once test domain (tests/integration/once/: a create that works on after its INSERT).
#include <signal.h>

#include <filesystem>

#include "core/lineage.hpp"
#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kDomain = kSource + "/tests/integration/once";

class CalgonTest : public DomainTest {
 protected:
  void SetUp() override {
    SetUpDomain({kDomain + "/onc_items.sql"},
                {kDomain + "/onc_items_rel.toml", kSource + "/templates/cgn_tickets_rec.toml"});
  }

  NodeOptions Options(int jobs = 2) const {
    NodeOptions o = DomainOptions();
    o.extra_toml = "[brokers.cBroker]\nhandler = \"calgon\"\ninstances = " + std::to_string(jobs) +
                   "\nprefetch = 1\nbindings = []\nmax_retries = 2\nretry_backoff_ms = [50]\n";
    return o;
  }

  json::object Send(const std::string& key, const std::string& body) {
    auto reply = Call(key, body, 20s);
    return reply.body.is_object() ? reply.body.as_object() : json::object{};
  }
  std::string Submit(const std::string& name, int work_ms) {
    auto r =
        Send("rel.write", R"({"template":"Items","op":"create","async":true,"data":{"name":")" +
                              name + R"(","work_ms":)" + std::to_string(work_ms) + "}}");
    EXPECT_EQ(r["ok"], json::value(true)) << json::serialize(r);
    EXPECT_EQ(r["status"], json::value("queued")) << json::serialize(r);
    return r.contains("ticket") ? std::string(r["ticket"].as_string()) : "";
  }
  json::object Ticket(const std::string& op, const std::string& ticket,
                      const std::string& data = "{}") {
    return Send("sys.read", R"({"template":"calgon","op":")" + op + R"(","id":")" + ticket +
                                R"(","data":)" + data + "}");
  }
  std::string StatusOf(const json::object& reply) {
    if (!reply.contains("data")) return "(" + json::serialize(reply) + ")";
    return std::string(reply.at("data").at("status").as_string());
  }
  std::string Count(const std::string& name) {
    return Scalar("SELECT COUNT(*) FROM onc_items WHERE name = '" + name + "'");
  }
};

std::string CodeOf(const json::object& reply) {
  if (!reply.contains("error")) return "(ok)";
  return std::string(reply.at("error").at("code").as_string());
}

TEST_F(CalgonTest, SubmitPollWaitDone) {
  StartNode(Options());
  // Someone listening for completions.
  auto events = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(events);
  auto queue = (*events)->DeclareQueue("", amqp::QueueOptions{false, true, true, {}});
  ASSERT_TRUE(queue);
  ASSERT_TRUE((*events)->BindQueue(*queue, "beds.events", "calgon.done.#"));
  ASSERT_TRUE((*events)->Consume(*queue, true));

  const auto sent = std::chrono::steady_clock::now();
  const std::string ticket = Submit("job1", 400);
  // Answered before the work could have been done.
  EXPECT_LT(std::chrono::steady_clock::now() - sent, 400ms);
  EXPECT_TRUE(IsEventId(ticket)) << ticket;
  const std::string early = StatusOf(Ticket("poll", ticket));
  EXPECT_TRUE(early == "queued" || early == "running") << early;

  auto done = Ticket("wait", ticket, R"({"timeout_ms":10000})");
  ASSERT_EQ(StatusOf(done), "done") << json::serialize(done);
  const json::object& t = done.at("data").as_object();
  EXPECT_EQ(t.at("result").at("data").at(0).at("name"), json::value("job1"));
  EXPECT_EQ(t.at("attempts"), json::value(1));
  EXPECT_EQ(t.at("template"), json::value("Items"));
  EXPECT_EQ(t.at("op"), json::value("create"));
  for (const char* when : {"created", "started", "finished", "expires"}) {
    EXPECT_TRUE(t.at(when).is_string()) << when;
  }
  EXPECT_EQ(Count("job1"), "1");
  // Poll of a finished ticket: the same result.
  EXPECT_EQ(Ticket("poll", ticket).at("data").at("result"), t.at("result"));

  std::optional<amqp::Delivery> event;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto next = (*events)->Next(100ms);
        if (next && *next) event = std::move(**next);
        return event.has_value();
      },
      10s));
  EXPECT_EQ(event->routing_key, "calgon.done.Items");
  auto body = json::parse(event->message.body).as_object();
  EXPECT_EQ(body.at("ticket"), json::value(ticket));
  EXPECT_EQ(body.at("status"), json::value("done"));

  // A call declared kind = "job" is a job without asking.
  auto job = Send(
      "rel.write",
      R"({"template":"Items","op":"call","call":"rebuild","data":{"name":"job2","work_ms":0}})");
  ASSERT_EQ(job["status"], json::value("queued")) << json::serialize(job);
  auto rebuilt = Ticket("wait", std::string(job["ticket"].as_string()), R"({"timeout_ms":10000})");
  EXPECT_EQ(StatusOf(rebuilt), "done") << json::serialize(rebuilt);
  EXPECT_EQ(Count("job2"), "1");
}

TEST_F(CalgonTest, WaitTimesOutAndCancelSkipsAQueuedJob) {
  StartNode(Options(1));  // one job at a time: the second waits in the queue
  const std::string first = Submit("long", 1500);
  const std::string second = Submit("never", 0);
  const auto asked = std::chrono::steady_clock::now();
  auto waited = Ticket("wait", first, R"({"timeout_ms":200})");
  EXPECT_GE(std::chrono::steady_clock::now() - asked, 200ms);
  const std::string status = StatusOf(waited);
  EXPECT_TRUE(status == "queued" || status == "running") << status;

  auto cancelled = Ticket("cancel", second);
  EXPECT_EQ(StatusOf(cancelled), "cancelled") << json::serialize(cancelled);
  EXPECT_EQ(StatusOf(Ticket("wait", first, R"({"timeout_ms":10000})")), "done");
  // The worker takes the cancelled job and skips it: both messages are acked.
  ASSERT_TRUE(WaitFor(
      [&] {
        const json::object ping = Ping();  // kept: the loop reads into it
        for (const auto& p : ping.at("pools").as_array()) {
          if (p.at("broker") == "cBroker") return p.at("acked").as_int64() >= 2;
        }
        return false;
      },
      10s));
  EXPECT_EQ(Count("never"), "0");
  EXPECT_EQ(StatusOf(Ticket("poll", second)), "cancelled");
  // A finished job cannot be cancelled.
  EXPECT_EQ(CodeOf(Ticket("cancel", first)), "CONFLICT");
}

TEST_F(CalgonTest, AFailingJobKeepsItsError) {
  StartNode(Options());
  const std::string ticket = Submit("bad", -1);
  auto failed = Ticket("wait", ticket, R"({"timeout_ms":10000})");
  ASSERT_EQ(StatusOf(failed), "failed") << json::serialize(failed);
  const json::object& error = failed.at("data").at("error").as_object();
  EXPECT_EQ(error.at("code"), json::value("VALIDATION"));
  EXPECT_EQ(error.at("message"), json::value("work_ms must not be negative"));
  EXPECT_EQ(Count("bad"), "0");
}

TEST_F(CalgonTest, AJobOnAKilledNodeRunsAgainAndAppliesOnce) {
  const NodeOptions o = Options();
  StartNode(o);
  const std::string ticket = Submit("survivor", 1500);
  ASSERT_TRUE(WaitFor([&] { return StatusOf(Ticket("poll", ticket)) == "running"; }, 10s));
  nodes_.back()->Signal(SIGKILL);
  StartNode(o);
  auto done = Ticket("wait", ticket, R"({"timeout_ms":20000})");
  ASSERT_EQ(StatusOf(done), "done") << json::serialize(done);
  EXPECT_EQ(done.at("data").at("attempts"), json::value(2));
  EXPECT_EQ(Count("survivor"), "1");
}

TEST_F(CalgonTest, BadTicketsAndRequests) {
  StartNode(Options());
  EXPECT_EQ(CodeOf(Ticket("poll", "not-a-ticket")), "VALIDATION");
  EXPECT_EQ(CodeOf(Ticket("poll", NewEventId("appserver", "dev"))), "NOT_FOUND");
  EXPECT_EQ(CodeOf(Ticket("frob", NewEventId("appserver", "dev"))), "UNKNOWN_OP");
  const std::string ticket = Submit("t", 0);
  EXPECT_EQ(CodeOf(Ticket("wait", ticket, R"({"timeout_ms":600001})")), "VALIDATION");
  EXPECT_EQ(CodeOf(Ticket("wait", ticket, R"({"timeout_ms":"soon"})")), "VALIDATION");
  EXPECT_EQ(CodeOf(Ticket("poll", ticket, R"({"x":1})")), "VALIDATION");
  // async on a system op, and a submit that cannot run: refused at once, no ticket.
  EXPECT_EQ(CodeOf(Send("sys.read", R"({"template":"sys","op":"ping","async":true})")),
            "VALIDATION");
  EXPECT_EQ(
      CodeOf(Send("rel.write", R"({"template":"Items","op":"create","async":true,"data":{}})")),
      "VALIDATION");
  EXPECT_EQ(CodeOf(Send("rel.write", R"({"template":"Items","op":"frob","async":true})")),
            "UNKNOWN_OP");
  // Tickets are written by BEDS only.
  EXPECT_EQ(CodeOf(Send("rec.write", R"({"template":"Tickets","op":"update","id":")" + ticket +
                                         R"(","data":{"status":"done"}})")),
            "FORBIDDEN");

  // An expired ticket reads as expired, then is swept and is no more.
  ASSERT_EQ(StatusOf(Ticket("wait", ticket, R"({"timeout_ms":10000})")), "done");
  auto r = RunCommand(
      "/usr/bin/python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
      "c.execute(\\\"UPDATE calgonTickets SET doc = json_set(doc, '$.expires', "
      "'2000-01-01T00:00:00.000Z')\\\"); c.commit()\" " +
      (dir_ / "docs.sqlite").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto expired = Ticket("poll", ticket);
  EXPECT_TRUE(StatusOf(expired) == "expired" || CodeOf(expired) == "NOT_FOUND")
      << json::serialize(expired);
  EXPECT_TRUE(WaitFor([&] { return CodeOf(Ticket("poll", ticket)) == "NOT_FOUND"; }, 10s));
}

}  // namespace
}  // namespace beds::testing
