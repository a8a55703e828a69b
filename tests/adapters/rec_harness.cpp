#include "adapters/rec_harness.hpp"

#include "adapters/mongodb/mongodb.hpp"
#include "adapters/sqlite/sqlite.hpp"
#include "brokers/dispatch.hpp"
#include "core/once.hpp"
#include "core/ops.hpp"
#include "core/validate.hpp"
#include "protocol/envelope.hpp"

namespace beds::testing {

RecHarness::RecHarness(config::DatabaseSettings settings, const std::string& templates_dir,
                       std::shared_ptr<adapters::sqlite::Store> shared)
    : settings_(std::move(settings)) {
  auto loaded = templates::LoadDir(templates_dir);
  if (!loaded) {
    load_error = loaded.error().message;
    return;
  }
  for (auto& t : *loaded) {
    if (t.database == settings_.name) snapshot_.by_name.emplace(t.name, std::move(t));
  }
  if (settings_.engine == config::Engine::kSqlite) {
    core_ = adapters::sqlite::MakeCore(shared ? shared : adapters::sqlite::OpenStore(settings_));
  } else {
    core_ = adapters::mongodb::MakeCore(adapters::mongodb::OpenStore(settings_, 2));
  }
}

std::map<std::string, std::string> RecHarness::PrepareAll() {
  std::map<std::string, std::string> out;
  for (const auto& [name, t] : snapshot_.by_name) {
    auto r = core_->Prepare(t);
    out[name] = r ? "" : r.error().message;
  }
  return out;
}

Result<OpResult> RecHarness::Run(const std::string& body) {
  // Not a protocol op: {"template": T, "op": "create_many", "data": [doc, …]} drives the batch
  // insert the log store uses (NamasteCore::CreateMany), each document validated as a create.
  boost::system::error_code ec;
  const auto parsed = boost::json::parse(body, ec);
  if (!ec && parsed.is_object() && parsed.as_object().contains("op") &&
      parsed.at("op") == "create_many") {
    const Template* t = snapshot_.Find(std::string(parsed.at("template").as_string()));
    const OpSpec* create = t ? t->Op("create") : nullptr;
    if (!create) return std::unexpected(Error{Code::kUnknownTemplate, "no template with create"});
    std::vector<Payload> payloads;
    for (const auto& doc : parsed.at("data").as_array()) {
      if (!doc.is_object()) return std::unexpected(Error{Code::kBadRequest, "not an object"});
      auto p = ValidatePayload(*t, *create, "create", doc.as_object(), "");
      if (!p) return std::unexpected(p.error());
      payloads.push_back(std::move(*p));
    }
    return core_->CreateMany(*t, *create, payloads);
  }
  auto request = protocol::DecodeRequest(body, 1 << 24);
  if (!request) return std::unexpected(request.error());
  const Template* t = snapshot_.Find(request->template_name);
  if (!t) return std::unexpected(Error{Code::kUnknownTemplate, "no template"});
  auto spec = FindOp(*t, *request);
  if (!spec) return std::unexpected(spec.error());
  // A write with an idempotency key applies exactly once, as the dispatcher has it (the sender
  // is "probe").
  if (!request->idempotency_key.empty() && IsWrite(*t, *request)) {
    OnceScope once;
    once.identity = OnceIdentityOfKey(t->name, "probe", request->idempotency_key);
    once.by_key = true;
    return RunOp(*t, **spec, *request, *core_, &once);
  }
  return RunOp(*t, **spec, *request, *core_);
}

std::string RecHarness::Handle(const std::string& body) {
  auto r = Run(body);
  if (!r) return protocol::EncodeError("probe", r.error());
  return protocol::EncodeOk("probe", std::move(r->data), r->count, r->replayed);
}

}  // namespace beds::testing
