package io.trellis2lora.local.asl;

import java.util.List;
import java.util.concurrent.TimeUnit;

/** Ends a process and everything it started (the worker runs Blender and other children). */
public final class ProcessTree {
    private ProcessTree() {
    }

    /** SIGTERM to the whole tree, then SIGKILL to whatever is left after a grace period. */
    public static void terminate(Process process) {
        List<ProcessHandle> tree = new java.util.ArrayList<>(process.descendants().toList());
        tree.add(process.toHandle());
        tree.forEach(ProcessHandle::destroy);
        Thread reaper = new Thread(() -> {
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            tree.stream().filter(ProcessHandle::isAlive).forEach(ProcessHandle::destroyForcibly);
        }, "process-reaper");
        reaper.setDaemon(false);
        reaper.start();
    }
}
