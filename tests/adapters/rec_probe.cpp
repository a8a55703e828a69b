// beds-rec-probe: one REC adapter driven over stdin/stdout, for the MongoDB wire tests.
//   beds-rec-probe --templates DIR --engine mongodb --uri URI [--query-timeout-ms N] …
// Prints {"prepared": {template: "" | error}} once, then answers each request envelope read from
// stdin (one JSON object per line) with the reply body a client would get, one per line.
#include <boost/json.hpp>
#include <iostream>
#include <string>

#include "adapters/rec_harness.hpp"

int main(int argc, char** argv) {
  beds::config::DatabaseSettings s;
  s.name = "docs";
  s.engine = beds::config::Engine::kMongodb;
  std::string dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--templates")
      dir = v;
    else if (k == "--engine")
      s.engine = beds::config::EngineNamed(v).value_or(beds::config::Engine::kMongodb);
    else if (k == "--uri")
      s.uri = v;
    else if (k == "--path")
      s.path = v;
    else if (k == "--write-concern")
      s.write_concern = v;
    else if (k == "--query-timeout-ms")
      s.query_timeout_ms = std::stoll(v);
    else if (k == "--reconnect-wait-ms")
      s.reconnect_wait_ms = std::stoll(v);
    else if (k == "--max-document-bytes")
      s.max_document_bytes = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  beds::testing::RecHarness harness(s, dir);
  if (!harness.load_error.empty()) {
    std::cerr << harness.load_error << "\n";
    return 2;
  }
  boost::json::object prepared;
  for (const auto& [name, error] : harness.PrepareAll()) prepared[name] = error;
  std::cout << boost::json::serialize(boost::json::object{{"prepared", prepared}}) << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::cout << harness.Handle(line) << std::endl;
  }
  return 0;
}
