#include "core/namaste.hpp"

#include "core/validate.hpp"

namespace beds {

Value Payload::Get(const std::string& name, FieldType type) const {
  auto it = values.find(name);
  return it == values.end() ? Value::Null(type) : it->second;
}

Result<OpResult> NamasteCore::CreateMany(const Template& t, const OpSpec& op,
                                         const std::vector<Payload>& payloads) {
  OpResult out;
  for (const Payload& p : payloads) {
    auto r = Create(t, op, p);
    if (r) {
      ++out.count;
    } else if (r.error().code != Code::kConflict) {
      return std::unexpected(r.error());
    }
  }
  return out;
}

Result<OpResult> NamasteCore::CreateDocuments(const Template& t, const OpSpec& op,
                                              std::vector<boost::json::object> documents) {
  std::vector<Payload> payloads;
  payloads.reserve(documents.size());
  for (const auto& doc : documents) {
    auto p = ValidatePayload(t, op, "create", doc, "");
    if (!p) return std::unexpected(p.error());
    payloads.push_back(std::move(*p));
  }
  return CreateMany(t, op, payloads);
}

Result<OpResult> ApplyWrite(NamasteCore& core, const Write& w) {
  switch (w.kind) {
    case Write::Kind::kCreate:
      return core.Create(*w.t, *w.spec, w.payload);
    case Write::Kind::kUpdate:
      return core.Update(*w.t, *w.spec, w.payload);
    case Write::Kind::kDelete:
      return core.Delete(*w.t, *w.spec, w.payload);
    case Write::Kind::kCall:
      return core.Call(*w.t, *w.spec, w.payload);
  }
  return core.Call(*w.t, *w.spec, w.payload);
}

std::vector<Result<OpResult>> NamasteCore::ApplyWrites(std::vector<Write>& writes) {
  std::vector<Result<OpResult>> results;
  results.reserve(writes.size());
  for (const Write& w : writes) results.push_back(ApplyWrite(*this, w));
  return results;
}

std::expected<std::vector<OpResult>, WriteFailure> NamasteCore::ApplyAtomically(
    std::vector<Write>& /*writes*/) {
  return std::unexpected(WriteFailure{
      0, Error{Code::kValidation, "atomic batches hold REL writes: this engine cannot"}});
}

void CoreFactory::Register(std::string database, Maker maker) {
  makers_[std::move(database)] = std::move(maker);
}

NamasteCore* CoreFactory::Session::For(const Template& t) {
  if (auto it = cores_.find(t.database); it != cores_.end()) return it->second.get();
  auto maker = factory_->makers_.find(t.database);
  if (maker == factory_->makers_.end()) return nullptr;
  auto core = maker->second();
  NamasteCore* raw = core.get();
  cores_.emplace(t.database, std::move(core));
  return raw;
}

}  // namespace beds
