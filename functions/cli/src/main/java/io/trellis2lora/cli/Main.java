package io.trellis2lora.cli;

import io.trellis2lora.core.InputRefusedException;
import io.trellis2lora.local.Worker;
import io.trellis2lora.orchestration.Preparer;
import java.io.PrintStream;
import java.util.Arrays;
import java.util.List;

/**
 * bin/trellis2-lora: every command of the local command line, dispatched from here. Exit 0 on success, 2 when the
 * input is refused (every reason on stderr, one per line), 130 when interrupted, 1 on anything else.
 */
public final class Main {
    private Main() {
    }

    /** The commands, in the usage's order; {@code worker} starts the Python worker (tests put a stand-in there). */
    static List<Command> commands(List<String> worker) {
        return List.of(new InspectCommand(), new EstimateCommand(), new TrainCommand(worker),
                new GenerateCommand(worker), new ConvertCommand(worker));
    }

    static String usage(List<Command> commands) {
        StringBuilder sb = new StringBuilder("usage: trellis2-lora COMMAND ...\n");
        for (Command c : commands) {
            sb.append("  ").append(c.name()).append(' ').append(c.usage().replace("\n", "\n  ")).append('\n');
        }
        return sb.append("""
                Local paths in a request file are read relative to its folder; archives and images may also be
                https:// URLs or s3:// URIs. BASE: tiny (small random-weight model, CPU), a local model directory, or
                a Hugging Face repo id (default %s).
                Exit codes: 0 done, 2 input refused (the reasons on stderr), 1 anything else, 130 interrupted.
                `trellis2-lora COMMAND --help` prints one command's usage.""".formatted(Preparer.DEFAULT_BASE_MODEL))
                .toString();
    }

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err, Worker.launcher()));
    }

    public static int run(String[] args, PrintStream out, PrintStream err, List<String> worker) {
        List<Command> commands = commands(worker);
        if (args.length == 0 || args[0].equals("-h") || args[0].equals("--help")) {
            (args.length == 0 ? err : out).println(usage(commands));
            return args.length == 0 ? 2 : 0;
        }
        Command command = commands.stream().filter(c -> c.name().equals(args[0])).findFirst().orElse(null);
        if (command == null) {
            err.println("unknown command '" + args[0] + "'");
            err.println(usage(commands));
            return 2;
        }
        List<String> rest = Arrays.asList(args).subList(1, args.length);
        if (rest.contains("-h") || rest.contains("--help")) {
            out.println("usage: trellis2-lora " + command.name() + " " + command.usage());
            return 0;
        }
        try {
            return command.run(rest, out, err);
        } catch (InputRefusedException e) {
            e.problems().forEach(err::println);
            return 2;
        } catch (UsageException e) {
            err.println(e.getMessage());
            err.println("usage: trellis2-lora " + command.name() + " " + command.usage());
            return 2;
        } catch (InterruptedException e) {
            return 130;
        } catch (Exception e) {
            err.println("error: " + (e.getMessage() == null ? e.toString() : e.getMessage()));
            return 1;
        }
    }
}
