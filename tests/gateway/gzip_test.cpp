#include "gateway/gzip.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

namespace beds::gateway {
namespace {

std::string Gunzip(const std::string& zipped) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
  std::string out(1 << 20, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(zipped.data()));
  z.avail_in = static_cast<uInt>(zipped.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(out.size() - z.avail_out);
  inflateEnd(&z);
  return out;
}

TEST(GatewayGzip, RoundTripsAndShrinksJson) {
  std::string body = R"({"ok":true,"data":[)";
  for (int i = 0; i < 200; ++i)
    body += R"({"id":)" + std::to_string(i) + R"(,"email":"u@example.org"},)";
  body += "{}]}";
  auto zipped = Gzip(body);
  ASSERT_TRUE(zipped);
  EXPECT_LT(zipped->size(), body.size() / 4);
  EXPECT_EQ(static_cast<unsigned char>((*zipped)[0]), 0x1f);  // the gzip magic
  EXPECT_EQ(Gunzip(*zipped), body);
}

TEST(GatewayGzip, AcceptEncoding) {
  EXPECT_TRUE(AcceptsGzip("gzip"));
  EXPECT_TRUE(AcceptsGzip("deflate, gzip;q=0.5"));
  EXPECT_TRUE(AcceptsGzip("br, *"));
  EXPECT_FALSE(AcceptsGzip(""));
  EXPECT_FALSE(AcceptsGzip("deflate, br"));
  EXPECT_FALSE(AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(AcceptsGzip("gzip; q=0.0"));
  EXPECT_FALSE(AcceptsGzip("xgzip"));
}

}  // namespace
}  // namespace beds::gateway
