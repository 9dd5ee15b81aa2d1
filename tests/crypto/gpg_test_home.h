// GpgTestHome: a throwaway GnuPG home holding one freshly generated ed25519
// signing key, for tests that sign and verify. It never touches the user's
// ~/.gnupg; its gpg-agent is stopped and the directory removed afterwards.
#pragma once

#include <cctype>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace kiln::testing {

class GpgTestHome {
 public:
  // `passphrase` empty: the key is unprotected (%no-protection).
  explicit GpgTestHome(const std::string& name = "Kiln Test", const std::string& passphrase = "") {
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace);
    std::string email;
    for (char c : name) email += c == ' ' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    email += "@kiln.invalid";
    std::string params = std::string(passphrase.empty() ? "%no-protection\n" : "") +
                         "Key-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n" +
                         (passphrase.empty() ? "" : "Passphrase: " + passphrase + "\n") + "Name-Real: " + name +
                         "\nName-Email: " + email + "\nExpire-Date: 0\n%commit\n";
    write_text(dir_ / "params", params);
    auto made = run_program({"gpg", "--batch", "--pinentry-mode", "loopback", "--gen-key",
                             (dir_ / "params").string()}, env());
    if (made.exit_code != 0) throw std::runtime_error("gpg --gen-key failed: " + made.err);
    auto listed = run_program({"gpg", "--batch", "--with-colons", "--list-secret-keys"}, env());
    auto fpr = listed.out.find("\nfpr:");
    if (fpr == std::string::npos) throw std::runtime_error("no key after gpg --gen-key: " + listed.out);
    fingerprint_ = listed.out.substr(fpr + 1).substr(std::string("fpr:::::::::").size(), 40);
    user_id_ = name + " <" + email + ">";
  }
  ~GpgTestHome() { run_program({"gpgconf", "--homedir", dir_.path().string(), "--kill", "all"}); }
  GpgTestHome(const GpgTestHome&) = delete;
  GpgTestHome& operator=(const GpgTestHome&) = delete;

  const std::filesystem::path& home() const { return dir_.path(); }
  const std::string& fingerprint() const { return fingerprint_; }
  const std::string& user_id() const { return user_id_; }
  std::vector<std::string> env() const { return {"GNUPGHOME=" + dir_.path().string()}; }

  // Writes the public key as a binary keyring (`gpg --export`), returns `file`.
  std::filesystem::path export_public(const std::filesystem::path& file, bool armor = false) const {
    std::vector<std::string> argv = {"gpg", "--batch", "--yes", "--output", file.string()};
    if (armor) argv.push_back("--armor");
    argv.insert(argv.end(), {"--export", fingerprint_});
    auto done = run_program(argv, env());
    if (done.exit_code != 0) throw std::runtime_error("gpg --export failed: " + done.err);
    return file;
  }

  // `gpg --verify` in this home (which holds the key): the interop check.
  ProcessResult gpg_verify(const std::vector<std::string>& files) const {
    std::vector<std::string> argv = {"gpg", "--batch", "--verify"};
    argv.insert(argv.end(), files.begin(), files.end());
    return run_program(argv, env());
  }

 private:
  ScratchDir dir_;
  std::string fingerprint_;
  std::string user_id_;
};

}  // namespace kiln::testing
