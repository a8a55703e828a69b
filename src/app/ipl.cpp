#include "app/ipl.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "adapters/mariadb/mariadb.hpp"
#include "adapters/mongodb/mongodb.hpp"
#include "adapters/sqlite/sqlite.hpp"
#include "amqp/connection.hpp"
#include "amqp/topology.hpp"

namespace beds::app {
namespace {

// mongodb://[user:pass@]host[:port][,host[:port]…][/db][?opts] → host:port pairs
std::vector<std::pair<std::string, int>> MongoHosts(const std::string& uri) {
  std::vector<std::pair<std::string, int>> hosts;
  size_t start = uri.find("://");
  if (start == std::string::npos) return hosts;
  start += 3;
  size_t end = uri.find_first_of("/?", start);
  std::string list = uri.substr(start, end == std::string::npos ? std::string::npos : end - start);
  if (const size_t at = list.rfind('@'); at != std::string::npos) list = list.substr(at + 1);
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t comma = list.find(',', pos);
    std::string item =
        list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!item.empty()) {
      int port = 27017;
      if (const size_t colon = item.rfind(':'); colon != std::string::npos) {
        port = std::atoi(item.c_str() + colon + 1);
        item = item.substr(0, colon);
      }
      hosts.emplace_back(item, port);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return hosts;
}

int ConnectWithTimeout(int fd, const sockaddr* addr, socklen_t len, int timeout_ms) {
  const int flags = fcntl(fd, F_GETFL, 0);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, addr, len);
  if (rc == 0) return 0;
  if (errno != EINPROGRESS) return errno;
  pollfd p{fd, POLLOUT, 0};
  rc = ::poll(&p, 1, timeout_ms);
  if (rc == 0) return ETIMEDOUT;
  if (rc < 0) return errno;
  int err = 0;
  socklen_t err_len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
  return err;
}

}  // namespace

bool UsesDatabases(const config::Config& c) {
  return std::any_of(c.brokers.begin(), c.brokers.end(), [](const config::BrokerSettings& b) {
    return b.handler == config::HandlerKind::kDispatch ||
           b.handler == config::HandlerKind::kCalgon || b.handler == config::HandlerKind::kLogs;
  });
}

std::vector<Endpoint> ConfiguredEndpoints(const config::Config& c, bool with_databases) {
  std::vector<Endpoint> out;
  out.push_back({"AMQP broker " + c.node.broker_service, c.amqp.host, c.amqp.port, ""});
  if (!with_databases) return out;
  for (const auto& [name, db] : c.databases) {
    if (db.engine == config::Engine::kMariadb) {
      out.push_back({"database " + name + " (master)", db.host, db.port, db.socket});
      for (size_t i = 0; i < db.secondaries.size(); ++i) {
        out.push_back({"database " + name + " (secondary " + std::to_string(i) + ")",
                       db.secondaries[i].host, db.secondaries[i].port, ""});
      }
    } else if (db.engine == config::Engine::kMongodb) {
      for (const auto& [host, port] : MongoHosts(db.uri)) {
        out.push_back({"database " + name + " (mongodb)", host, port, ""});
      }
    }
  }
  return out;
}

Result<void> Preflight(const Endpoint& e, int timeout_ms) {
  if (!e.socket.empty()) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (e.socket.size() >= sizeof(addr.sun_path)) {
      return Fail(Code::kUnavailable, e.what + ": socket path too long: " + e.socket);
    }
    std::strncpy(addr.sun_path, e.socket.c_str(), sizeof(addr.sun_path) - 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    const int err =
        ConnectWithTimeout(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr), timeout_ms);
    ::close(fd);
    if (err != 0)
      return Fail(Code::kUnavailable, e.what + " at " + e.socket + ": " + std::strerror(err));
    return Ok();
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(e.port);
  if (const int rc = getaddrinfo(e.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return Fail(Code::kUnavailable,
                e.what + ": cannot resolve " + e.host + ": " + gai_strerror(rc));
  }
  int err = ECONNREFUSED;
  for (addrinfo* a = found; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    err = ConnectWithTimeout(fd, a->ai_addr, a->ai_addrlen, timeout_ms);
    ::close(fd);
    if (err == 0) break;
  }
  freeaddrinfo(found);
  if (err != 0) {
    return Fail(Code::kUnavailable,
                e.what + " at " + e.host + ":" + port + " is not reachable: " + std::strerror(err));
  }
  return Ok();
}

Result<void> DeclareTopology(const config::Config& c) {
  auto conn = amqp::Connection::Open(c.amqp);
  if (!conn) return std::unexpected(conn.error());
  if (auto r = amqp::DeclareExchanges(**conn); !r) return r;
  for (const auto& broker : c.brokers) {
    if (auto r = amqp::DeclareBrokerQueues(**conn, broker); !r) return r;
  }
  return Ok();
}

Result<TemplateSet> LoadTemplates(const config::Config& c,
                                  std::shared_ptr<const CoreFactory> factory, TemplateUse use) {
  auto loaded = templates::LoadDir(c.templates.dir);
  if (!loaded) return std::unexpected(loaded.error());
  TemplateSet set;
  set.snapshot = std::make_shared<templates::Snapshot>();
  if (use == TemplateUse::kRouteOnly) {
    for (auto& t : *loaded) {
      const std::string name = t.name;
      set.snapshot->by_name.emplace(name, std::move(t));
    }
    return set;
  }
  std::optional<CoreFactory::Session> ensure;
  if (factory) ensure.emplace(std::move(factory));
  std::map<std::string, Result<Schema>> schemas;
  std::map<std::string, std::string> unavailable_stores;  // REC database → why
  for (auto& t : *loaded) {
    auto unavailable = [&](const std::string& why) {
      set.problems.push_back(t.name + " (" + t.file + "): " + why);
      set.snapshot->unavailable[t.name] = why;
    };
    auto db = c.databases.find(t.database);
    if (db == c.databases.end()) {
      unavailable("database \"" + t.database + "\" is not configured ([databases." + t.database +
                  "])");
    } else if (t.template_class == TemplateClass::kRel &&
               db->second.engine != config::Engine::kMariadb) {
      unavailable("a rel template needs a mariadb database; \"" + t.database + "\" is " +
                  std::string(config::EngineName(db->second.engine)));
    } else if (t.template_class == TemplateClass::kRec &&
               db->second.engine == config::Engine::kMariadb) {
      unavailable("a rec template needs a sqlite or mongodb database; \"" + t.database +
                  "\" is mariadb");
    } else if (t.template_class == TemplateClass::kRec) {
      // Collections and indexes are created when missing, through a worker-like session.
      // A store that is unavailable (unreachable server, unusable file) is so for every template
      // on it: asked once, so IPL does not wait out a server-selection timeout per template.
      NamasteCore* core = ensure ? ensure->For(t) : nullptr;
      if (auto down = unavailable_stores.find(t.database); down != unavailable_stores.end()) {
        unavailable(down->second);
      } else if (core) {
        if (auto r = core->Prepare(t); !r) {
          if (r.error().code == Code::kUnavailable)
            unavailable_stores[t.database] = r.error().message;
          unavailable(r.error().message);
        }
      }
    } else {
      auto it = schemas.find(t.database);
      if (it == schemas.end())
        it = schemas.emplace(t.database, adapters::mariadb::ReadSchema(db->second)).first;
      if (!it->second) {
        set.unchecked.push_back(t.name + " (" + t.file +
                                "): not checked: " + it->second.error().message);
      } else {
        auto problems = templates::BindCheck(t, *it->second);
        if (c.idempotency.enabled) {
          const auto once = templates::OnceCheck(t, *it->second);
          if (!once.missing.empty()) {
            std::string what;
            for (const auto& m : once.missing) what += (what.empty() ? "" : ", ") + m;
            problems.push_back(
                "its writes apply exactly once ([idempotency] enabled), and "
                "database \"" +
                t.database + "\" lacks " + what +
                ": install schema/mariadb/000_beds_idempotency.sql there");
          }
          // A procedure that commits on its own breaks the guarantee without failing a request:
          // in production that ends IPL, in development the operator is told.
          for (const auto& e : once.ends_transaction) {
            if (c.node.production)
              problems.push_back(e);
            else
              set.warnings.push_back(t.name + " (" + t.file + "): " + e);
          }
        }
        std::string all;
        for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
        if (!problems.empty()) unavailable(all);
        for (const auto& w : templates::BindWarnings(t, *it->second))
          set.warnings.push_back(t.name + " (" + t.file + "): " + w);
        templates::Annotate(t, *it->second);
      }
    }
    const std::string name = t.name;
    set.snapshot->by_name.emplace(name, std::move(t));
  }
  return set;
}

std::shared_ptr<CoreFactory> MakeCoreFactory(const config::Config& c) {
  auto factory = std::make_shared<CoreFactory>();
  // A MongoDB pool holds one client per worker that may use it at once.
  int workers = 0;
  for (const auto& b : c.brokers) {
    workers += b.handler == config::HandlerKind::kDispatch ? b.instances : 0;
  }
  for (const auto& [name, db] : c.databases) {
    switch (db.engine) {
      case config::Engine::kMariadb:
        factory->Register(name, [settings = db] { return adapters::mariadb::MakeCore(settings); });
        break;
      case config::Engine::kSqlite: {
        auto store = adapters::sqlite::OpenStore(db);
        factory->Register(name, [store] { return adapters::sqlite::MakeCore(store); });
        break;
      }
      case config::Engine::kMongodb: {
        auto store = adapters::mongodb::OpenStore(db, workers);
        factory->Register(name, [store] { return adapters::mongodb::MakeCore(store); });
        break;
      }
    }
  }
  return factory;
}

}  // namespace beds::app
