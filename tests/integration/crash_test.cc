// Crashes are seen and kept, for real: a qemu guest whose kernel panics in
// early boot, before its pvpanic driver is loaded, and which would then hang
// for ever (panic=0), is reported by `kiln boot --wait-ready` within seconds,
// with the panic line; on_crash applies; its console log outlives it until
// `kiln destroy` removes it. So does the log of a guest that was not ready
// in time.
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::read_text;

const fs::path kImage = fs::path(KILN_INTEGRATION_DIR) / "default";
constexpr std::string_view kPanicLine = "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100";

class CrashTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return testing::run_kiln(args, env()); }

  // A domain of the default image whose init exits at once: the kernel
  // panics ("Attempted to kill init!") and, with panic=0, hangs.
  fs::path panicking_config(const std::string& name) {
    names_.push_back(name);
    fs::path config = dir_ / (name + ".cfg");
    testing::write_text(config, "name = \"" + name + "\"\n"
                                "kernel = \"" + (kImage / "vmlinuz").string() + "\"\n"
                                "ramdisk = \"" + (kImage / "initrd.img").string() + "\"\n"
                                "disk = ['file:" + (kImage / "disk.raw").string() + ",xvda,w']\n"
                                "root = \"/dev/xvda2 ro\"\n"
                                "extra = \"panic=0 init=/bin/false\"\n");
    return config;
  }

  nlohmann::json find(const std::string& name) const {
    auto listed = kiln({"list", "--json"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    for (const auto& instance : nlohmann::json::parse(listed.out))
      if (instance["name"] == name) return instance;
    return nullptr;
  }

  fs::path live_log(const std::string& name) const { return dir_ / "run" / name / "console.log"; }
  fs::path kept_log(const std::string& name) const { return dir_ / "state/logs" / (name + ".console.log"); }

  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }

  testing::ScratchDir dir_;
  std::vector<std::string> names_;
};

// `args` run as kiln in the background while the instance's live console log
// is watched: when did the panic line show there, and when did kiln return?
struct Timed {
  ProcessResult result;
  std::optional<Clock::time_point> panic_seen;
  Clock::time_point returned;
};

Timed run_watching(const std::function<ProcessResult()>& run, const fs::path& log) {
  auto call = std::async(std::launch::async, run);
  Timed timed;
  while (call.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready)
    if (!timed.panic_seen && read_text(log).find(kPanicLine) != std::string::npos) timed.panic_seen = Clock::now();
  timed.returned = Clock::now();
  timed.result = call.get();
  return timed;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

TEST_F(CrashTest, AQemuGuestThatPanicsIsReportedAtOnceAndItsLogOutlivesIt) {
  fs::path config = panicking_config("panics");
  auto start = Clock::now();
  Timed boot = run_watching(
      [&] {
        return kiln({"boot", config.string(), "--backend", "qemu", "--net", "none", "--detach", "--wait-ready=120"});
      },
      live_log("panics"));
  EXPECT_NE(boot.result.exit_code, 0);
  EXPECT_THAT(boot.result.err, HasSubstr("panics crashed before it was ready: the guest kernel panicked: "
                                         "Attempted to kill init! exitcode=0x00000100"));
  EXPECT_THAT(boot.result.err, HasSubstr(std::string(kPanicLine)));
  EXPECT_THAT(boot.result.err, HasSubstr("console log kept in " + kept_log("panics").string()));
  ASSERT_TRUE(boot.panic_seen) << "the panic never showed in the live log\n" << boot.result.err;
  double report = seconds(boot.returned - *boot.panic_seen);
  fmt::print("panic to report: {:.2f} s (boot call: {:.1f} s)\n", report, seconds(boot.returned - start));
  EXPECT_LT(report, 5.0);

  // on_crash = destroy: the instance is gone, not its log.
  EXPECT_TRUE(testing::wait_for([&] { return find("panics").is_null(); }, std::chrono::seconds(30),
                                [&] { return kiln({"list"}).out; }));
  EXPECT_FALSE(fs::exists(dir_ / "run/panics"));
  auto shown = kiln({"console", "--log", "panics"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr(std::string(kPanicLine)));
  EXPECT_THAT(shown.out, HasSubstr("---[ end Kernel panic"));  // the whole report, not its first line
  EXPECT_THAT(shown.err, HasSubstr("panics is gone; its console log was kept on"));
  EXPECT_THAT(kiln({"list"}).out, HasSubstr("Console logs kept (`kiln console --log NAME` shows one, `kiln destroy "
                                            "NAME` removes it): panics"));

  auto destroyed = kiln({"destroy", "panics"});
  EXPECT_EQ(destroyed.exit_code, 0) << destroyed.err;
  EXPECT_FALSE(fs::exists(kept_log("panics")));
  auto none = kiln({"console", "--log", "panics"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("panics has no console log"));
  auto again = kiln({"destroy", "panics"});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_THAT(again.err, HasSubstr("no instance named panics, and no console log kept of one"));
}

// on_crash = preserve: the panicked guest is stopped, not ended, and stays
// for inspection; its own log is the one `kiln console --log` shows.
TEST_F(CrashTest, OnCrashPreserveStopsThePanickedQemuGuestAndKeepsIt) {
  fs::path config = panicking_config("kept");
  auto boot = kiln({"boot", config.string(), "--backend", "qemu", "--net", "none", "--on-crash", "preserve",
                    "--detach", "--wait-ready=120"});
  EXPECT_NE(boot.exit_code, 0);
  EXPECT_THAT(boot.err, HasSubstr("kept crashed before it was ready: the guest kernel panicked"));
  EXPECT_THAT(boot.err, HasSubstr("on_crash = preserve: it is kept as it is until `kiln destroy kept`"));
  auto listed = find("kept");
  ASSERT_FALSE(listed.is_null());
  EXPECT_EQ(listed["state"], "crashed");
  EXPECT_GT(listed["hypervisor_pid"].get<int>(), 0);  // qemu is there, stopped
  EXPECT_THAT(listed["last_event"].get<std::string>(), HasSubstr("Attempted to kill init!"));
  auto shown = kiln({"console", "--log", "kept"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr(std::string(kPanicLine)));
  EXPECT_THAT(shown.err, HasSubstr("the console log of kept (crashed), " + live_log("kept").string()));
  EXPECT_TRUE(fs::exists(kept_log("kept")));
  EXPECT_EQ(kiln({"destroy", "kept"}).exit_code, 0);
  EXPECT_TRUE(find("kept").is_null());
  EXPECT_FALSE(fs::exists(kept_log("kept")));
}

// `kiln run` removes its instance when it was not ready in time; the log of
// how far it got stays.
TEST_F(CrashTest, AGuestNotReadyInTimeLeavesItsLog) {
  names_.push_back("late");
  auto run = kiln({"run", kImage.string(), "--name", "late", "--backend", "uml", "--net", "none", "--wait-ready", "1",
                   "--", "true"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("late was not ready within 1 s"));
  EXPECT_THAT(run.err, HasSubstr("console log kept in " + kept_log("late").string()));
  EXPECT_TRUE(testing::wait_for([&] { return find("late").is_null(); }, std::chrono::seconds(60),
                                [&] { return kiln({"list"}).out; }));
  EXPECT_TRUE(fs::exists(kept_log("late")));
  auto shown = kiln({"console", "--log", "late"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.err, HasSubstr("late is gone"));
  EXPECT_EQ(kiln({"destroy", "late"}).exit_code, 0);
  EXPECT_FALSE(fs::exists(kept_log("late")));
}

}  // namespace
}  // namespace kiln
