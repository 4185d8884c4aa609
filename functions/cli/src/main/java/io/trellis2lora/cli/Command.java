package io.trellis2lora.cli;

import java.io.PrintStream;
import java.util.List;

/** One command of bin/trellis2-lora. */
interface Command {
    /** The word that selects it. */
    String name();

    /** Its usage: the argument line (after the name), then indented lines saying what it does. */
    String usage();

    /** Exit code: 0 done, 2 input refused, 1 anything else, 130 interrupted. */
    int run(List<String> args, PrintStream out, PrintStream err) throws Exception;
}
