// Domain containers for real, the way the 2005 paper deployed servers:
//   1. the baked default image is cut into canned archives: /usr, which every
//      domain shares and none changes, and the rest of the root filesystem
//      with the /etc that each domain patches;
//   2. two container files that differ only in their /etc patch: hostname,
//      and passwd/shadow/group/gshadow entries (and a home) for a user of
//      their own;
//   3. both run with --require-signatures, fetching over HTTP, then both
//      domains boot at once under UML from their stripped configs;
//   4. each has its own hostname and user: in its filesystem, in `kiln list`
//      and seen from inside the guest.
// UML boots without an initramfs, so it cannot mount a separate /usr before
// init: those domains' root images get the shared /usr archive expanded
// into them. The paper's own layout, one read-only /usr image that every
// domain mounts beside a small root of its own, boots under qemu with the
// image's initramfs, which mounts /usr from the root's fstab: a third
// domain checks that.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/hash.h"
#include "formats/ext4/ext4_image.h"
#include "formats/tree/file_tree.h"
#include "tests/crypto/gpg_test_home.h"
#include "tests/feeds/test_http_server.h"
#include "tests/integration/root_filesystem.h"
#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::read_text;
using testing::run_kiln;
using testing::run_program;
using testing::write_text;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";

struct Domain {
  std::string name;
  std::string hostname;  // from its /etc patch
  std::string user;
  uint32_t uid;
};
const Domain kDomains[] = {{"fido", "fido-web", "alice", 2001}, {"rex", "rex-db", "bob", 2002}};

// Copies a tree out of an image, owners and modes (setuid included) kept.
// Device nodes are left out: the guest's /dev is a devtmpfs.
void export_tree(FileTree& from, const std::string& path, const fs::path& to) {
  auto names = from.list_directory(path);
  ASSERT_TRUE(names) << names.error().to_string();
  for (const std::string& name : *names) {
    std::string child = path == "/" ? "/" + name : path + "/" + name;
    auto node = from.stat(child);
    ASSERT_TRUE(node && *node);
    fs::path host = to / child.substr(1);
    const TreeNode& n = **node;
    if (n.type == EntryType::kDirectory) {
      ASSERT_EQ(::mkdir(host.c_str(), 0700), 0) << host;
      export_tree(from, child, to);
    } else if (n.type == EntryType::kFile) {
      auto content = from.read_file(child);
      ASSERT_TRUE(content) << content.error().to_string();
      write_text(host, *content);
    } else if (n.type == EntryType::kSymlink) {
      ASSERT_EQ(::symlink(n.link_target.c_str(), host.c_str()), 0) << host;
    } else {
      continue;
    }
    ASSERT_EQ(::lchown(host.c_str(), n.uid, n.gid), 0) << host;
    if (n.type != EntryType::kSymlink) {
      ASSERT_EQ(::chmod(host.c_str(), n.mode), 0) << host;
    }
  }
}

void copy_with_attributes(const fs::path& from, const fs::path& to) {
  fs::create_directories(to.parent_path());
  ASSERT_EQ(run_program({"cp", "-a", from.string(), to.string()}).exit_code, 0) << from;
}

constexpr const char* kNotPrinted = "(not printed)";

// The value the check script printed as "CHECK NAME=VALUE" on the console.
std::string checked(const std::string& console, const std::string& name) {
  std::string key = "CHECK " + name + "=";
  size_t at = console.find(key);
  if (at == std::string::npos) return kNotPrinted;
  at += key.size();
  return console.substr(at, console.find_first_of("\r\n", at) - at);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Everything one run of the suite shares: the canned parts, the signing
// key, the store served over HTTP, each domain's composition, and the
// instances the boot test starts (destroyed at the end).
class ContainerIntegration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::ScratchDir();
    key_ = new testing::GpgTestHome("Kiln Image Store");
    fs::create_directories(*dir_ / "store");
    server_ = new testing::TestHttpServer(*dir_ / "store", *dir_ / "requests.log");
    cut_the_default_image();
    for (const Domain& domain : kDomains) make_patch(domain);
    for (const char* part : {"store/root.cpio.gz", "store/usr.cpio.zst"}) canned_hashes_[part] = hash(part);
    for (const Domain& domain : kDomains) compose(domain);
  }

  static void TearDownTestSuite() {
    for (const Domain& domain : kDomains) run_kiln({"destroy", domain.name}, env());
    run_kiln({"destroy", "spot"}, env());
    delete server_;
    delete key_;
    delete dir_;
  }

  static std::string path(const std::string& name) { return (*dir_ / name).string(); }
  static std::vector<std::string> env() {
    return {"KILN_RUNTIME_DIR=" + path("run"), "KILN_STATE_DIR=" + path("state")};
  }
  static std::string hash(const std::string& name) { return file_digest_hex(*dir_ / name).value_or(""); }

  static void sign(const std::string& name) {
    auto done = run_program({"gpg", "--batch", "--yes", "--armor", "--detach-sign", "--output", path(name) + ".asc",
                             path(name)},
                            key_->env());
    ASSERT_EQ(done.exit_code, 0) << done.err;
  }

  // The default image's root filesystem as two signed canned archives:
  // store/usr.cpio.zst holds ./usr, store/root.cpio.gz everything else.
  // /boot is left empty: a domain's kernel comes from its config, as
  // under Xen. The fstab finds the root by the label every domain's
  // [image] gives it, not by the baked filesystem's UUID.
  static void cut_the_default_image() {
    auto image = Ext4Image::open(testing::root_filesystem_file(kImage), testing::root_filesystem_offset(kImage), false);
    ASSERT_TRUE(image) << image.error().to_string();
    auto tree = ext4_tree(*image, testing::root_filesystem(kImage));
    fs::create_directories(*dir_ / "tree");
    export_tree(*tree, "/", *dir_ / "tree");
    fs::create_directories(*dir_ / "usr-part");
    fs::rename(*dir_ / "tree/usr", *dir_ / "usr-part/usr");
    ASSERT_EQ(::mkdir(path("tree/usr").c_str(), 0755), 0);
    for (const auto& entry : fs::directory_iterator(*dir_ / "tree/boot")) fs::remove_all(entry.path());
    fs::remove_all(*dir_ / "tree/lost+found");
    write_text(*dir_ / "tree/etc/fstab", "# /etc/fstab: the canned root of kiln's container test\n"
                                         "LABEL=root\t/\text4\terrors=remount-ro\t0\t1\n");
    write_text(*dir_ / "can.domain", "[create " + path("tree/") + " file://" + path("store/root.cpio.gz") +
                                         "][end]\n"
                                         "[create " + path("usr-part/") + " " + path("store/usr.cpio.zst") + "][end]\n");
    auto canned = run_kiln({"container", path("can.domain"), "--log", path("can.log")});
    ASSERT_EQ(canned.exit_code, 0) << canned.err;
    sign("store/root.cpio.gz");
    sign("store/usr.cpio.zst");
    key_->export_public(*dir_ / "trusted.gpg");
  }

  // The domain's /etc patch: its hostname and a user of its own, made with
  // `kiln diff` from copies of the canned files.
  static void make_patch(const Domain& domain) {
    fs::path old_root = *dir_ / (domain.name + "-old"), new_root = *dir_ / (domain.name + "-new");
    for (const char* file : {"etc/hostname", "etc/passwd", "etc/shadow", "etc/group", "etc/gshadow"}) {
      copy_with_attributes(*dir_ / "tree" / file, old_root / file);
      copy_with_attributes(*dir_ / "tree" / file, new_root / file);
    }
    ASSERT_EQ(::mkdir((old_root / "home").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((new_root / "home").c_str(), 0755), 0);
    std::string id = std::to_string(domain.uid);
    auto append = [&](const std::string& file, const std::string& line) {
      write_text(new_root / file, read_text(new_root / file) + line + "\n");
    };
    write_text(new_root / "etc/hostname", domain.hostname + "\n");
    append("etc/passwd", domain.user + ":x:" + id + ":" + id + "::/home/" + domain.user + ":/bin/bash");
    append("etc/group", domain.user + ":x:" + id + ":");
    append("etc/shadow", domain.user + ":!:19700:0:99999:7:::");
    append("etc/gshadow", domain.user + ":!::");
    fs::path home = new_root / "home" / domain.user;
    ASSERT_EQ(::mkdir(home.c_str(), 0700), 0);
    ASSERT_EQ(::chown(home.c_str(), domain.uid, domain.uid), 0);
    auto diff = run_kiln({"diff", old_root.string(), new_root.string(), "-o",
                          path("store/" + domain.name + "-etc.patch")});
    ASSERT_EQ(diff.exit_code, 0) << diff.err;
    sign("store/" + domain.name + "-etc.patch");
  }

  // The layout of the paper's examples: fields over lines, "] [end]".
  static std::string container_file(const Domain& domain) {
    std::string root = path("domains/" + domain.name + "-root");
    return "name = \"" + domain.name + "\"\n"
           "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
           "memory = 256\nvcpus = 1\n"
           "root = \"/dev/xvda1 ro\"\n"
           "disk = ['file:" + root + ",xvda1,w']\n"
           "[image " + root + "\n 1500M\n root ext4] [end]\n"
           "[populate image\n " + root + "\n /mnt/\n " + server_->url("root.cpio.gz") + "\n][end]\n"
           "[populate image\n " + root + "\n /mnt/\n " + server_->url("usr.cpio.zst") + "\n][end]\n"
           "[patch\n file://" + root + "\n " + server_->url(domain.name + "-etc.patch") + "\n][end]\n";
  }

  static void compose(const Domain& domain) {
    write_text(*dir_ / (domain.name + ".domain"), container_file(domain));
    sign(domain.name + ".domain");
    auto started = std::chrono::steady_clock::now();
    auto ran = run_kiln({"container", path(domain.name + ".domain"), "--stripped", path(domain.name + ".cfg"), "--log",
                         path(domain.name + ".log"), "--dir", path("work"), "--require-signatures", "--keyring",
                         path("trusted.gpg"), "--json"});
    compose_seconds_[domain.name] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    ASSERT_EQ(ran.exit_code, 0) << ran.err;
    compose_out_[domain.name] = ran.out;
  }

  static std::string in_root(const Domain& domain, const std::string& file) {
    auto image = Ext4Image::open(*dir_ / "domains" / (domain.name + "-root"), 0, false);
    if (!image) return "(" + image.error().to_string() + ")";
    auto text = image->read_file(file);
    return text ? *text : "(" + text.error().message + ")";
  }

  static testing::ScratchDir* dir_;
  static testing::GpgTestHome* key_;
  static testing::TestHttpServer* server_;
  static std::map<std::string, std::string> canned_hashes_;
  static std::map<std::string, double> compose_seconds_;
  static std::map<std::string, std::string> compose_out_;
};

testing::ScratchDir* ContainerIntegration::dir_ = nullptr;
testing::GpgTestHome* ContainerIntegration::key_ = nullptr;
testing::TestHttpServer* ContainerIntegration::server_ = nullptr;
std::map<std::string, std::string> ContainerIntegration::canned_hashes_;
std::map<std::string, double> ContainerIntegration::compose_seconds_;
std::map<std::string, std::string> ContainerIntegration::compose_out_;

TEST_F(ContainerIntegration, EachDomainIsComposedFromTheSameCannedPartsWithItsOwnEtc) {
  for (const Domain& domain : kDomains) {
    ASSERT_TRUE(compose_out_.contains(domain.name)) << "the composition failed; see the suite's set-up";
    EXPECT_EQ(in_root(domain, "/etc/hostname"), domain.hostname + "\n");
    EXPECT_THAT(in_root(domain, "/etc/passwd"), HasSubstr("\n" + domain.user + ":x:" + std::to_string(domain.uid)));
    EXPECT_THAT(in_root(domain, "/etc/shadow"), HasSubstr("\n" + domain.user + ":!:"));
    EXPECT_THAT(in_root(domain, "/etc/group"), HasSubstr("\n" + domain.user + ":x:"));
    EXPECT_THAT(in_root(domain, "/usr/lib/os-release"), HasSubstr("Debian"));
    for (const Domain& other : kDomains)
      if (other.name != domain.name) {
        EXPECT_THAT(in_root(domain, "/etc/passwd"), Not(HasSubstr(other.user + ":x:")));
      }
    auto fsck = run_program({"e2fsck", "-fn", path("domains/" + domain.name + "-root")});
    EXPECT_EQ(fsck.exit_code, 0) << fsck.out;
    // Every fetched item was verified: both archives, the patch, the file itself.
    std::string out = compose_out_[domain.name];
    auto result = nlohmann::json::parse(out.substr(out.rfind('\n', out.size() - 2) + 1));
    EXPECT_EQ(result["verified"].size(), 4u) << out;
    EXPECT_EQ(result["fetched"], 3);
    EXPECT_EQ(read_text(*dir_ / (domain.name + ".cfg")).find("[image"), std::string::npos);
    std::cout << domain.name << ": composed in " << compose_seconds_[domain.name] << " s (kiln container, wall)\n";
  }
  // Each run fetched each canned archive once, and its own patch; the
  // canned parts are as they were.
  std::string requests = server_->requests();
  EXPECT_EQ(count(requests, "GET /root.cpio.gz -\n"), 2u) << requests;
  EXPECT_EQ(count(requests, "GET /usr.cpio.zst -\n"), 2u) << requests;
  EXPECT_EQ(count(requests, "GET /fido-etc.patch -\n"), 1u) << requests;
  EXPECT_EQ(count(requests, "GET /rex-etc.patch -\n"), 1u) << requests;
  EXPECT_EQ(count(requests, "PUT "), 0u) << requests;
  for (const auto& [part, before] : canned_hashes_) EXPECT_EQ(hash(part), before) << part;
}

TEST_F(ContainerIntegration, BothDomainsBootWithTheirOwnHostnameAndUser) {
  ASSERT_EQ(compose_out_.size(), 2u) << "the composition failed; see the suite's set-up";
  // Runs in each guest before it reports ready, printing on kiln's console
  // line (ttyS0; under UML /dev/console is tty0).
  write_text(*dir_ / "check.sh", "#!/bin/sh\n{ echo \"CHECK users=$(getent passwd alice bob | cut -d: -f1 | tr '\\n' ,)\";\n"
                                 "  echo \"CHECK home=$(stat -c %U /home/*)\"; } > /dev/ttyS0\n");
  fs::permissions(*dir_ / "check.sh", fs::perms::owner_all);
  std::map<std::string, testing::ProcessResult> results;
  for (const Domain& domain : kDomains) results[domain.name];
  std::vector<std::thread> boots;
  for (const Domain& domain : kDomains)
    boots.emplace_back([&, name = domain.name] {
      results[name] = run_kiln({"boot", path(name + ".cfg"), "--backend", "uml", "--net", "none", "--detach",
                                "--wait-ready=240", "--firstboot", path("check.sh"), "--json"},
                               env());
    });
  for (auto& boot : boots) boot.join();
  for (const Domain& domain : kDomains) {
    auto console = [&] { return read_text(*dir_ / "run" / domain.name / "console.log"); };
    EXPECT_EQ(results[domain.name].exit_code, 0) << results[domain.name].err << console();
    // Both lines, whatever else the console carried meanwhile.
    EXPECT_TRUE(testing::wait_for(
        [&] { return checked(console(), "users") != kNotPrinted && checked(console(), "home") != kNotPrinted; },
        std::chrono::seconds(60), console));
    EXPECT_EQ(checked(console(), "users"), domain.user + ",") << console();
    EXPECT_EQ(checked(console(), "home"), domain.user) << console();
  }
  auto listed = run_kiln({"list", "--json"}, env());
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  std::map<std::string, std::string> hostnames;
  for (const auto& instance : nlohmann::json::parse(listed.out))
    hostnames[instance["name"].get<std::string>()] = instance["guest"]["hostname"].get<std::string>();
  EXPECT_EQ(hostnames, (std::map<std::string, std::string>{{"fido", "fido-web"}, {"rex", "rex-db"}}));
}

TEST_F(ContainerIntegration, TheSharedReadOnlyUsrLayoutBootsUnderQemu) {
  // Canned once: the root archive again, with /usr mounted from the shared
  // image by label, and that image, filled from the /usr archive's tree.
  write_text(*dir_ / "tree/etc/fstab", read_text(*dir_ / "tree/etc/fstab") + "LABEL=usr\t/usr\text4\tro\t0\t0\n");
  write_text(*dir_ / "can-shared.domain",
             "[create " + path("tree/") + " file://" + path("store/root-shared.cpio.gz") + "][end]\n"
             "[create " + path("usr-part/usr/") + " file://" + path("store/usr-only.cpio.zst") + "][end]\n"
             "[image " + path("store/usr.img") + " 1500M usr ext4][end]\n"
             "[populate image " + path("store/usr.img") + " /usr/ file://" + path("store/usr-only.cpio.zst") +
             "][end]\n");
  auto canned = run_kiln({"container", path("can-shared.domain")});
  ASSERT_EQ(canned.exit_code, 0) << canned.err;
  // The domain: a small root of its own, fido's /etc patch, the shared /usr.
  std::string root = path("domains/spot-root");
  write_text(*dir_ / "spot.domain",
             "name = \"spot\"\nkernel = \"" + (kImage / "vmlinuz").string() + "\"\nramdisk = \"" +
                 (kImage / "initrd.img").string() + "\"\nmemory = 512\nroot = \"/dev/xvda1 ro\"\n"
                 "disk = ['file:" + root + ",xvda1,w', 'file:" + path("store/usr.img") + ",xvda2,r']\n"
                 "[image " + root + " 256MB root ext4] [end]\n"
                 "[populate image " + root + " /mnt/ " + server_->url("root-shared.cpio.gz") + "][end]\n"
                 "[patch file://" + root + " " + server_->url("fido-etc.patch") + "][end]\n");
  auto started = std::chrono::steady_clock::now();
  auto composed = run_kiln({"container", path("spot.domain"), "--stripped", path("spot.cfg"), "--dir", path("work")});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(composed.exit_code, 0) << composed.err;
  std::cout << "spot: composed in " << seconds << " s (kiln container, wall; shared /usr)\n";
  write_text(*dir_ / "usr.sh", "#!/bin/sh\necho \"CHECK usr=$(findmnt -no SOURCE,OPTIONS /usr | cut -d, -f1)\" "
                               "> /dev/ttyS0\n");
  fs::permissions(*dir_ / "usr.sh", fs::perms::owner_all);
  auto booted = run_kiln({"boot", path("spot.cfg"), "--backend", "qemu", "--net", "none", "--detach",
                          "--wait-ready=300", "--firstboot", path("usr.sh")},
                         env());
  auto console = [&] { return read_text(*dir_ / "run/spot/console.log"); };
  ASSERT_EQ(booted.exit_code, 0) << booted.err << console();
  EXPECT_TRUE(testing::wait_for([&] { return checked(console(), "usr") != kNotPrinted; }, std::chrono::seconds(60),
                                console));
  EXPECT_EQ(checked(console(), "usr"), "/dev/vdb ro") << console();
  EXPECT_EQ(run_program({"e2fsck", "-fn", path("store/usr.img")}).exit_code, 0) << "nobody wrote to the shared /usr";
}

}  // namespace
}  // namespace kiln
