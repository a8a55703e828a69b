// Who may call what: `template/op` patterns ("Users/*", "*/fetch", "Users/call:get",
// "Users/call:*", "calgon/*", "*"), one matcher for the gateway's principals and the node's
// AMQP clients ([access.clients.*]).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace beds {

// Whether one of `patterns` covers `permission` ("Users/fetch", "Users/call:get"). A pattern
// side is a name, `*`, or a prefix ending in `*`; the pattern `*` alone covers everything.
bool Allows(const std::vector<std::string>& patterns, std::string_view permission);

}  // namespace beds
