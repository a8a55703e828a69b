#include "adapters/rec_harness.hpp"

#include "adapters/mongodb/mongodb.hpp"
#include "adapters/sqlite/sqlite.hpp"
#include "brokers/dispatch.hpp"
#include "protocol/envelope.hpp"

namespace beds::testing {

RecHarness::RecHarness(config::DatabaseSettings settings, const std::string& templates_dir)
    : settings_(std::move(settings)) {
  auto loaded = templates::LoadDir(templates_dir);
  if (!loaded) {
    load_error = loaded.error().message;
    return;
  }
  for (auto& t : *loaded) {
    if (t.database == settings_.name) snapshot_.by_name.emplace(t.name, std::move(t));
  }
  if (settings_.engine == "sqlite") {
    core_ = adapters::sqlite::MakeCore(adapters::sqlite::OpenStore(settings_));
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
  auto request = protocol::DecodeRequest(body, 1 << 24);
  if (!request) return std::unexpected(request.error());
  const Template* t = snapshot_.Find(request->template_name);
  if (!t) return std::unexpected(Error{Code::kUnknownTemplate, "no template"});
  auto spec = brokers::FindOp(*t, *request);
  if (!spec) return std::unexpected(spec.error());
  return brokers::RunOp(*t, **spec, *request, *core_);
}

std::string RecHarness::Handle(const std::string& body) {
  auto r = Run(body);
  if (!r) return protocol::EncodeError("probe", r.error());
  return protocol::EncodeOk("probe", std::move(r->data), r->count);
}

}  // namespace beds::testing
