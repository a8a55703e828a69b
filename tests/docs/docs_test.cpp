// docs/ is the reference users read, so it must not fall behind the code: every key of
// config/beds.toml (commented-out ones included), every error code and every command of `beds` and
// `bedsctl` has to appear in it. A key, code or command added without its documentation fails here.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace beds {
namespace {

namespace fs = std::filesystem;
const std::string kSource = BEDS_SOURCE_DIR;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every docs/*.md, one text.
std::string Docs() {
  std::string all;
  for (const auto& e : fs::directory_iterator(kSource + "/docs")) {
    if (e.path().extension() == ".md") all += ReadFile(e.path()) + "\n";
  }
  return all;
}

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return s;
}

// "section.key" for each `key = …` line of a TOML file, commented-out keys included (they are
// documented defaults an operator may set). (No std::regex: GCC 12 warns inside it under the
// sanitizer build, and warnings are errors.)
std::vector<std::string> KeyPaths(const fs::path& toml) {
  std::vector<std::string> keys;
  std::string section;
  std::istringstream lines(ReadFile(toml));
  for (std::string text; std::getline(lines, text);) {
    std::string_view line = Trim(text);
    if (line.starts_with("[")) {
      section = std::string(line.substr(1, line.find(']') - 1));
      continue;
    }
    if (line.starts_with("#")) line = Trim(line.substr(1));
    size_t n = 0;
    while (n < line.size() && IsKeyChar(line[n])) ++n;
    if (n == 0 || !(line[0] < '0' || line[0] > '9')) continue;
    if (!Trim(line.substr(n)).starts_with("=")) continue;
    const std::string key(line.substr(0, n));
    keys.push_back(section.empty() ? key : section + "." + key);
  }
  return keys;
}

// "config check", "dlq list", …: each subcommand a CLI11 program declares, with its parents, from
// lines such as `auto* check = config->add_subcommand("check", …)`.
std::vector<std::string> Commands(const fs::path& source) {
  std::map<std::string, std::string> path_of;  // variable → command path
  std::vector<std::string> commands;
  std::istringstream lines(ReadFile(source));
  for (std::string text; std::getline(lines, text);) {
    std::string_view line = Trim(text);
    const size_t call = line.find("add_subcommand(\"");
    if (!line.starts_with("auto* ") || call == std::string_view::npos) continue;
    const std::string var(line.substr(6, line.find(' ', 6) - 6));
    const size_t eq = line.find('=');
    std::string_view parent = Trim(line.substr(eq + 1, call - eq - 1));
    while (!parent.empty() &&
           (parent.back() == '>' || parent.back() == '-' || parent.back() == '.'))
      parent.remove_suffix(1);
    const size_t name_at = call + std::string_view("add_subcommand(\"").size();
    const std::string name(line.substr(name_at, line.find('"', name_at) - name_at));
    const auto p = path_of.find(std::string(parent));
    const std::string path = p == path_of.end() ? name : p->second + " " + name;
    path_of[var] = path;
    commands.push_back(path);
  }
  return commands;
}

TEST(Docs, EveryKeyOfTheBaseConfigIsDocumented) {
  const std::string docs = Docs();
  const auto keys = KeyPaths(kSource + "/config/beds.toml");
  ASSERT_GT(keys.size(), 40u) << "the key scan found too little";
  for (const auto& key : keys) {
    EXPECT_NE(docs.find(key), std::string::npos)
        << "config/beds.toml key " << key << " is not in docs/ (docs/configuration.md)";
  }
}

TEST(Docs, EveryKeyOfTheRoleFilesIsDocumented) {
  const std::string docs = Docs();
  for (const auto& e : fs::directory_iterator(kSource + "/config/nodes")) {
    for (const auto& key : KeyPaths(e.path())) {
      EXPECT_NE(docs.find(key), std::string::npos)
          << e.path().filename() << " key " << key << " is not in docs/";
    }
  }
}

TEST(Docs, EveryErrorCodeIsDocumented) {
  const std::string protocol = ReadFile(kSource + "/docs/protocol.md");
  for (int c = static_cast<int>(Code::kBadRequest); c <= static_cast<int>(Code::kInternal); ++c) {
    const std::string name(CodeName(static_cast<Code>(c)));
    EXPECT_NE(protocol.find("`" + name + "`"), std::string::npos)
        << name << " is not in docs/protocol.md";
  }
}

TEST(Docs, EveryCommandIsDocumented) {
  const std::string docs = Docs();
  const auto beds = Commands(kSource + "/src/app/main.cpp");
  const auto bedsctl = Commands(kSource + "/src/client/bedsctl.cpp");
  ASSERT_GE(beds.size(), 5u);
  ASSERT_GE(bedsctl.size(), 8u);
  for (const auto& c : beds) {
    EXPECT_NE(docs.find("beds " + c), std::string::npos) << "`beds " << c << "` is not in docs/";
  }
  for (const auto& c : bedsctl) {
    EXPECT_NE(docs.find("bedsctl " + c), std::string::npos)
        << "`bedsctl " << c << "` is not in docs/";
  }
}

// The README sends readers into docs/, and nothing in the repository points at files users do
// not have.
TEST(Docs, TheReadmeLinksIntoDocsAndNothingPointsOutsideTheRepository) {
  const std::string readme = ReadFile(kSource + "/README.md");
  for (const char* page : {"docs/protocol.md", "docs/configuration.md", "docs/templates.md",
                           "docs/operations.md", "docs/architecture.md"}) {
    EXPECT_TRUE(fs::exists(kSource + "/" + page)) << page;
    EXPECT_NE(readme.find(page), std::string::npos) << "README.md does not link " << page;
  }
  std::vector<fs::path> files = {kSource + "/README.md"};
  for (const char* dir : {"/docs", "/config", "/config/nodes", "/templates", "/scripts"}) {
    for (const auto& e : fs::directory_iterator(kSource + dir)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
  }
  for (const auto& f : files) {
    EXPECT_EQ(ReadFile(f).find("../shared"), std::string::npos) << f << " points at ../shared";
  }
}

}  // namespace
}  // namespace beds
