// Exactly-once writes (docs/protocol.md "Exactly once"): what identifies a write, what it asked
// for, and the reply recorded with its effect. An adapter that is handed a WriteOnce looks the
// identity up before it runs anything: recorded with the same digest, it answers the recorded
// reply (OpResult::replayed) without running the write; recorded with another digest, the key was
// reused for a different request (CONFLICT); not recorded, it runs the write and records the
// identity, digest and reply in the same transaction as the write's effect.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/template.hpp"

namespace beds {

// The idempotency keys a client may send: at most this many bytes.
inline constexpr size_t kMaxIdempotencyKeyBytes = 200;

// A write's identity (32 bytes, SHA-256) when the client gave an idempotency key: the key,
// scoped by the template and the sender's AMQP user, so two users or two templates never share
// a record.
std::string OnceIdentityOfKey(std::string_view template_name, std::string_view user,
                              std::string_view key);

// A write's identity without a key: its AMQP message_id, which a redelivery keeps, with the
// request's digest (a client that reuses message ids for different requests gets each applied).
std::string OnceIdentityOfMessage(std::string_view message_id, std::string_view digest);

// The digest (32 bytes, SHA-256) of a validated write: template, op and every value by name, so
// the same request sent with its fields in another order has the same digest.
std::string OnceDigest(const Template& t, std::string_view op, const Payload& p);

// The reply an adapter records with a write, and reads back to answer a repeat.
std::string EncodeRecordedReply(const OpResult& result);
Result<OpResult> DecodeRecordedReply(std::string_view text);

// CONFLICT: the identity is recorded with another request's digest.
Error KeyReusedError();
bool IsKeyReused(const Error& error);

// Lowercase hex of bytes, for logs and the SQLite record.
std::string Hex(std::string_view bytes);

}  // namespace beds
