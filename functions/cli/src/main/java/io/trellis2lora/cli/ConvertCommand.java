package io.trellis2lora.cli;

import io.trellis2lora.local.Worker;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;

/** {@code convert ...}: the worker's convert, with the same arguments and exit code. */
final class ConvertCommand implements Command {
    private final List<String> worker;

    ConvertCommand(List<String> worker) {
        this.worker = worker;
    }

    @Override
    public String name() {
        return "convert";
    }

    @Override
    public String usage() {
        return """
                ADAPTER --to peft|comfyui|merged --output OUT [--scale S] [--base BASE]
                  an adapter in another format: a PEFT directory, a ComfyUI file, or the base with it merged in""";
    }

    @Override
    public int run(List<String> args, PrintStream out, PrintStream err) throws Exception {
        List<String> command = new ArrayList<>(List.of("convert"));
        command.addAll(args);
        return Worker.run(worker, command, out, err);
    }
}
