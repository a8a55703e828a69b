#include "core/namaste.hpp"

namespace beds {

Value Payload::Get(const std::string& name, FieldType type) const {
  auto it = values.find(name);
  return it == values.end() ? Value::Null(type) : it->second;
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
