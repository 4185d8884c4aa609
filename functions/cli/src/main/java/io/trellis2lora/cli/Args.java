package io.trellis2lora.cli;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** A command's arguments: positionals, and the options it knows (with a value, or a flag alone). */
final class Args {
    final List<String> positional = new ArrayList<>();
    final Map<String, String> options = new LinkedHashMap<>();

    static Args parse(List<String> args, Set<String> withValue, Set<String> flags) {
        Args a = new Args();
        for (int i = 0; i < args.size(); i++) {
            String arg = args.get(i);
            if (withValue.contains(arg)) {
                if (i + 1 >= args.size()) {
                    throw new UsageException(arg + " needs a value");
                }
                a.options.put(arg, args.get(++i));
            } else if (flags.contains(arg)) {
                a.options.put(arg, "");
            } else if (arg.startsWith("-")) {
                throw new UsageException("unexpected option '" + arg + "'");
            } else {
                a.positional.add(arg);
            }
        }
        return a;
    }

    String only(String what) {
        if (positional.size() != 1) {
            throw new UsageException(positional.isEmpty() ? "missing " + what
                    : "unexpected argument '" + positional.get(1) + "'");
        }
        return positional.get(0);
    }

    String required(String option) {
        String v = options.get(option);
        if (v == null) {
            throw new UsageException(option + " is required");
        }
        return v;
    }

    boolean has(String option) {
        return options.containsKey(option);
    }
}
