package io.trellis2lora.core.net;

import java.net.Inet4Address;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * Which resolved addresses a user-given URL may reach. By default only public unicast addresses: loopback,
 * private (RFC 1918, CGNAT, IPv6 unique-local), link-local and unspecified addresses are refused, and the cloud
 * metadata endpoints always are.
 */
public record AddressPolicy(boolean allowLoopback, boolean allowPrivate) {

    public static final AddressPolicy PUBLIC_ONLY = new AddressPolicy(false, false);

    /** Reads TRELLIS2_ALLOW_LOOPBACK_URLS / TRELLIS2_ALLOW_PRIVATE_URLS ("true" to allow). */
    public static AddressPolicy fromEnvironment(java.util.function.Function<String, String> env) {
        return new AddressPolicy("true".equalsIgnoreCase(env.apply("TRELLIS2_ALLOW_LOOPBACK_URLS")),
                "true".equalsIgnoreCase(env.apply("TRELLIS2_ALLOW_PRIVATE_URLS")));
    }

    /** Null when {@code a} may be reached, else why not. */
    public String refusal(InetAddress a) {
        InetAddress v4 = embeddedIpv4(a);
        if (v4 != null) {
            a = v4;
        }
        byte[] b = a.getAddress();
        if (isMetadata(a, b)) {
            return "it is a cloud metadata address";
        }
        if (a.isLoopbackAddress()) {
            return allowLoopback ? null : "it is a loopback address";
        }
        if (a.isAnyLocalAddress() || a.isMulticastAddress() || reserved(a, b)) {
            return "it is not a public unicast address";
        }
        if (a.isLinkLocalAddress() || a.isSiteLocalAddress() || privateRange(a, b)) {
            return allowPrivate ? null : "it is a private or link-local address";
        }
        return null;
    }

    private static boolean isMetadata(InetAddress a, byte[] b) {
        if (a instanceof Inet4Address) {
            int x = ((b[0] & 0xff) << 24) | ((b[1] & 0xff) << 16) | ((b[2] & 0xff) << 8) | (b[3] & 0xff);
            // AWS/GCP/Azure 169.254.169.254, ECS task metadata 169.254.170.2, Alibaba 100.100.100.200.
            return x == 0xA9FEA9FE || x == 0xA9FEAA02 || x == 0x646464C8;
        }
        // fd00:ec2::254 (the IMDS IPv6 endpoint).
        byte[] imds = {(byte) 0xfd, 0, 0x0e, (byte) 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
        return java.util.Arrays.equals(b, imds);
    }

    private static boolean privateRange(InetAddress a, byte[] b) {
        if (a instanceof Inet4Address) {
            int b0 = b[0] & 0xff;
            int b1 = b[1] & 0xff;
            return (b0 == 100 && b1 >= 64 && b1 < 128)          // 100.64.0.0/10 carrier-grade NAT
                    || (b0 == 198 && (b1 == 18 || b1 == 19));   // 198.18.0.0/15 benchmarking
        }
        return (b[0] & 0xfe) == 0xfc;                           // fc00::/7 unique local
    }

    private static boolean reserved(InetAddress a, byte[] b) {
        if (a instanceof Inet4Address) {
            int b0 = b[0] & 0xff;
            return b0 == 0 || b0 >= 240 || (b0 == 192 && b[1] == 0 && b[2] == 0);
        }
        return false;
    }

    /** IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible and NAT64 (64:ff9b::/96) addresses carry an IPv4 target. */
    static InetAddress embeddedIpv4(InetAddress a) {
        if (!(a instanceof Inet6Address)) {
            return null;
        }
        byte[] b = a.getAddress();
        boolean zero10 = true;
        for (int i = 0; i < 10; i++) {
            zero10 &= b[i] == 0;
        }
        boolean mapped = zero10 && (b[10] & 0xff) == 0xff && (b[11] & 0xff) == 0xff;
        boolean compat = zero10 && b[10] == 0 && b[11] == 0 && !a.isLoopbackAddress() && !a.isAnyLocalAddress();
        boolean nat64 = b[0] == 0 && b[1] == 0x64 && (b[2] & 0xff) == 0xff && (b[3] & 0xff) == 0x9b;
        for (int i = 4; nat64 && i < 12; i++) {
            nat64 = b[i] == 0;
        }
        if (!mapped && !compat && !nat64) {
            return null;
        }
        try {
            return InetAddress.getByAddress(new byte[] {b[12], b[13], b[14], b[15]});
        } catch (UnknownHostException e) {
            return null;
        }
    }
}
