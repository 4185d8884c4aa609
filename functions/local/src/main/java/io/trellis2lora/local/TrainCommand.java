package io.trellis2lora.local;

import com.fasterxml.jackson.databind.JsonNode;
import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.local.asl.Execution;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * {@code trellis2-lora train REQUEST.json --out DIR [--base tiny] [--verbose]}: one request, start to end, on this
 * machine. Exit 0 when at least one adapter was trained, 1 when the request failed, 2 when it was refused, 130 when
 * interrupted.
 */
public final class TrainCommand {
    static final String USAGE = """
            usage: trellis2-lora train REQUEST.json --out DIR [--base BASE] [--render-size PX] [--verbose]
              BASE: tiny (small random-weight model, CPU), a local model directory, or a Hugging Face repo id
                    (default microsoft/TRELLIS.2-4B); DIR keeps requests/ and datasets/ (reused by later runs).
              PX:   condition render size for preprocessing (the worker's default when absent).""";

    private TrainCommand() {
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    static int run(String[] args, PrintStream out, PrintStream err) {
        Path request = null;
        Path dir = null;
        String base = null;
        boolean verbose = false;
        List<String> preprocessOptions = new java.util.ArrayList<>();
        int i = args.length > 0 && args[0].equals("train") ? 1 : 0;
        for (; i < args.length; i++) {
            switch (args[i]) {
                case "--out" -> dir = i + 1 < args.length ? Path.of(args[++i]) : null;
                case "--base" -> base = i + 1 < args.length ? args[++i] : null;
                case "--verbose", "-v" -> verbose = true;
                case "--render-size" -> {
                    if (i + 1 < args.length) {
                        preprocessOptions.addAll(List.of("--render-size", args[++i]));
                    }
                }
                case "-h", "--help" -> {
                    out.println(USAGE);
                    return 0;
                }
                default -> {
                    if (request == null && !args[i].startsWith("--")) {
                        request = Path.of(args[i]);
                    } else {
                        err.println("unexpected argument '" + args[i] + "'");
                        err.println(USAGE);
                        return 2;
                    }
                }
            }
        }
        if (request == null || dir == null) {
            err.println(USAGE);
            return 2;
        }
        Path repo = repoRoot();
        LocalRunner runner = new LocalRunner(dir, base, List.of(repo.resolve("bin/trellis2-worker").toString()),
                new Progress(out, verbose)).preprocessOptions(preprocessOptions);
        String requestId;
        try {
            requestId = runner.submit(request);
        } catch (InputRefusedException e) {
            e.problems().forEach(p -> err.println("refused: " + p));
            return 2;
        } catch (Exception e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
        out.println("request " + requestId + " (storage: " + runner.out() + ")");
        Execution execution;
        try {
            execution = runner.start(requestId);
        } catch (Exception e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
        // Ctrl-C: stop the execution, which ends every worker process, before the JVM exits.
        Thread hook = new Thread(() -> {
            if (execution.status() == Execution.Status.RUNNING) {
                err.println("interrupted: stopping every job ...");
                execution.stop("Interrupted", "stopped by the user");
                try {
                    execution.await(30, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }, "stop-on-interrupt");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            Execution.Status status = execution.await();
            Runtime.getRuntime().removeShutdownHook(hook);
            Path result = runner.publishResult(requestId);
            if (status == Execution.Status.ABORTED) {
                err.println("stopped");
                return 130;
            }
            if (result != null) {
                report(LocalRunner.readJson(result), result, out);
            }
            if (status != Execution.Status.SUCCEEDED) {
                err.println("request failed: " + execution.error() + ": " + execution.cause());
                return 1;
            }
            return 0;
        } catch (InterruptedException e) {
            return 130;
        } catch (Exception e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
    }

    private static void report(JsonNode result, Path file, PrintStream out) {
        out.println("result: " + file);
        for (JsonNode a : result.path("adapters")) {
            out.println("  adapter " + a.path("denoiser").asText() + ": " + a.path("lora_file").path("url").asText());
        }
        for (JsonNode f : result.path("failed")) {
            out.println("  failed  " + f.path("denoiser").asText() + ": " + f.path("error").asText());
        }
        if (result.has("preprocessed_data_file")) {
            out.println("  preprocessed dataset: " + result.path("preprocessed_data_file").path("url").asText());
        }
    }

    /** The checkout: $TRELLIS2_REPO, or found from where this class was loaded (functions/local/target/...). */
    static Path repoRoot() {
        String env = System.getenv("TRELLIS2_REPO");
        if (env != null && !env.isBlank()) {
            return Path.of(env);
        }
        try {
            Path p = Path.of(TrainCommand.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            for (Path d = p; d != null; d = d.getParent()) {
                if (Files.isExecutable(d.resolve("bin/trellis2-worker"))) {
                    return d;
                }
            }
        } catch (Exception e) {
            // fall through
        }
        return Path.of("").toAbsolutePath();
    }
}
