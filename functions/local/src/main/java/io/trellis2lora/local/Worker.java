package io.trellis2lora.local;

import io.trellis2lora.local.asl.ProcessTree;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The Python worker on this machine: where its launcher is ({@code bin/trellis2-worker} of the checkout), and one
 * worker command run in the foreground with its output streamed through (the local runner's Batch jobs and the
 * command line's generate/convert all start it from {@link #launcher}).
 */
public final class Worker {
    private Worker() {
    }

    /** [checkout/bin/trellis2-worker]: the command every worker process starts with. */
    public static List<String> launcher() {
        return List.of(repoRoot().resolve("bin/trellis2-worker").toString());
    }

    /** The checkout: $TRELLIS2_REPO, or found from where this class was loaded (functions/local/target/...). */
    public static Path repoRoot() {
        String env = System.getenv("TRELLIS2_REPO");
        if (env != null && !env.isBlank()) {
            return Path.of(env);
        }
        try {
            Path p = Path.of(Worker.class.getProtectionDomain().getCodeSource().getLocation().toURI());
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

    /**
     * Runs {@code launcher + args}, its stdout and stderr copied to {@code out} and {@code err} as they come (progress
     * bars included), and answers its exit code. Interrupted (Ctrl-C), it ends the worker and all it started.
     */
    public static int run(List<String> launcher, List<String> args, PrintStream out, PrintStream err)
            throws IOException, InterruptedException {
        List<String> command = new ArrayList<>(launcher);
        command.addAll(args);
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().put("PYTHONUNBUFFERED", "1");
        Process process;
        try {
            process = builder.start();
        } catch (IOException e) {
            throw new IOException("cannot start the worker (" + launcher.get(0) + "): run bin/setup first", e);
        }
        process.getOutputStream().close();
        Thread stop = new Thread(() -> {
            if (process.isAlive()) {
                ProcessTree.terminate(process);
            }
        }, "stop-worker");
        Runtime.getRuntime().addShutdownHook(stop);
        Thread o = copy(process.getInputStream(), out);
        Thread e = copy(process.getErrorStream(), err);
        try {
            int code = process.waitFor();
            o.join();
            e.join();
            return code;
        } catch (InterruptedException ie) {
            ProcessTree.terminate(process);
            throw ie;
        } finally {
            try {
                Runtime.getRuntime().removeShutdownHook(stop);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running: it ends the worker
            }
        }
    }

    private static Thread copy(InputStream in, PrintStream to) {
        Thread t = new Thread(() -> {
            byte[] buf = new byte[8192];
            try (in) {
                for (int n; (n = in.read(buf)) > 0; ) {
                    to.write(buf, 0, n);
                    to.flush();
                }
            } catch (IOException ignored) {
                // the worker ended
            }
        }, "worker-output");
        t.setDaemon(true);
        t.start();
        return t;
    }
}
