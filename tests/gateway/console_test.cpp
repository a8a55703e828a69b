#include "gateway/console.hpp"

#include <gtest/gtest.h>

#include <string>

namespace beds::gateway {
namespace {

TEST(GatewayConsole, ServesItsThreeFilesWithTheirTypes) {
  const ConsoleFile* page = ConsoleFileAt("/");
  const ConsoleFile* script = ConsoleFileAt("/console.js");
  const ConsoleFile* style = ConsoleFileAt("/console.css");
  ASSERT_NE(page, nullptr);
  ASSERT_NE(script, nullptr);
  ASSERT_NE(style, nullptr);
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  EXPECT_EQ(script->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(style->content_type, "text/css; charset=utf-8");
  EXPECT_EQ(ConsoleFileAt("/index.html"), nullptr);
  EXPECT_EQ(ConsoleFileAt(""), nullptr);
}

TEST(GatewayConsole, TheFilesAreTheSourcesBuiltIn) {
  // The page names its script and style by the paths served, and the sources arrived whole.
  const std::string page(ConsoleFileAt("/")->body);
  EXPECT_NE(page.find("<script src=\"/console.js\""), std::string::npos);
  EXPECT_NE(page.find("href=\"/console.css\""), std::string::npos);
  EXPECT_NE(page.find("</html>"), std::string::npos);
  EXPECT_NE(ConsoleFileAt("/console.js")->body.find("start();"), std::string_view::npos);
}

TEST(GatewayConsole, NothingTheCspWouldBlockOrThatRendersMarkup) {
  // The Content-Security-Policy allows only the page's own files: an inline script or style, or
  // anything from elsewhere, would be blocked. And replies hold client-supplied text, so the
  // script never hands a string to the HTML parser.
  const std::string page(ConsoleFileAt("/")->body);
  EXPECT_EQ(page.find("<script>"), std::string::npos);
  EXPECT_EQ(page.find("<style"), std::string::npos);
  EXPECT_EQ(page.find(" style=\""), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  const std::string_view script = ConsoleFileAt("/console.js")->body;
  for (const char* sink :
       {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("}) {
    EXPECT_EQ(script.find(sink), std::string_view::npos) << sink;
  }
  EXPECT_NE(kConsoleSecurityPolicy.find("script-src 'self'"), std::string_view::npos);
  EXPECT_NE(kConsoleSecurityPolicy.find("default-src 'none'"), std::string_view::npos);
}

}  // namespace
}  // namespace beds::gateway
