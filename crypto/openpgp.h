// OpenPGP signatures through gpgme: making detached ASCII-armored signatures
// and clearsigned texts with a secret key, and verifying them against an
// explicit set of trusted public keys.
//
// Trust is never implicit. TrustedKeys imports the keys it is given into a
// private, temporary GnuPG home, so the user's own keyring (and whatever its
// owner once imported) never vouches for anything. Secrets stay out of argv
// and logs: a passphrase is read from a file and handed to gpg-agent through
// gpgme's loopback channel, then wiped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

struct gpgme_data;  // gpgme's data handle, opaque here

namespace kiln {

// Who made a good signature.
struct SignatureInfo {
  std::string fingerprint;          // the primary key, upper-case hex
  std::string signing_fingerprint;  // the key or subkey that signed
  std::string user_id;              // the primary user id, "Name <mail>"
  int64_t created = 0;              // seconds since the epoch

  // "Name <mail> (FINGERPRINT)".
  std::string describe() const;
};

// A clearsigned text after verification: the text that was signed (what lay
// outside the signed part is dropped) and who signed it.
struct VerifiedText {
  std::string text;
  SignatureInfo signer;
};

// The public keys a verification may trust, and nothing else.
class TrustedKeys {
 public:
  // Imports every public key of a keyring file, binary (`gpg --export`) or
  // armored (`gpg --export --armor`). No key in it is an error.
  static Result<TrustedKeys> load(const std::filesystem::path& keyring);
  // The same from keys held in memory; `name` stands for them in errors.
  static Result<TrustedKeys> from_memory(std::string_view keys, std::string name);
  TrustedKeys(TrustedKeys&&) noexcept;
  TrustedKeys& operator=(TrustedKeys&&) noexcept;
  ~TrustedKeys();

  // Primary key fingerprints, as imported.
  const std::vector<std::string>& fingerprints() const;
  const std::string& name() const;

  // Checks a detached signature over `data`. Fails with ErrorKind::kUntrusted
  // when the signature is bad, made by a key outside this set, expired or
  // revoked, or not a signature at all; the error names both inputs.
  Result<SignatureInfo> verify_detached(std::string_view data, std::string_view signature,
                                        std::string_view data_name,
                                        std::string_view signature_name) const;
  // The same for a file, streamed rather than read into memory.
  Result<SignatureInfo> verify_detached_file(const std::filesystem::path& data,
                                             std::string_view signature,
                                             std::string_view signature_name) const;
  // Checks a clearsigned text and returns what it signs.
  Result<VerifiedText> verify_clearsigned(std::string_view text, std::string_view name) const;

 private:
  struct State;
  explicit TrustedKeys(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

struct SigningKeyOptions {
  // A key id, fingerprint or user id naming exactly one secret key.
  std::string key;
  // The GnuPG home holding it; empty: $GNUPGHOME, else ~/.gnupg.
  std::filesystem::path gnupg_home;
  // A file whose first line is the key's passphrase; empty: gpg-agent asks
  // (or knows) it, as for any gpg use.
  std::filesystem::path passphrase_file;
};

// A secret key to sign with.
class SigningKey {
 public:
  static Result<SigningKey> open(const SigningKeyOptions& options);
  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  // The primary key's fingerprint and user id.
  const std::string& fingerprint() const;
  const std::string& user_id() const;

  // A detached, ASCII-armored signature ("-----BEGIN PGP SIGNATURE-----").
  Result<std::string> sign_detached(std::string_view data) const;
  Result<std::string> sign_detached_file(const std::filesystem::path& data) const;
  // The text wrapped as "-----BEGIN PGP SIGNED MESSAGE-----".
  Result<std::string> clearsign(std::string_view text) const;
  // The public key, armored, for a keyring file others may trust.
  Result<std::string> export_public_key() const;

 private:
  struct State;
  explicit SigningKey(std::unique_ptr<State> state);
  // Signs `input` in gpgme's mode `mode` (detached or clear).
  Result<std::string> sign(gpgme_data* input, int mode) const;
  std::unique_ptr<State> state_;
};

}  // namespace kiln
