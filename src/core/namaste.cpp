#include "core/namaste.hpp"

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
