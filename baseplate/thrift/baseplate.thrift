# Baseplate's own Thrift definitions.
#
# Service IDLs include this file to inherit the health check:
#
#     include "baseplate.thrift"
#
#     service MyService extends baseplate.BaseplateService {
#         ...
#     }
#
# The structs below are the payload of the Edge-Request header: the Thrift
# binary serialisation of a Request travels between services so every hop
# sees the same edge context. Field ids and types are part of the wire
# format; never change them.

namespace py baseplate.thrift

/** The raw, encoded authentication token (a JWT). */
typedef string AuthenticationToken

/** The logged-out identifier of a browser or device (LoID cookie). */
struct Loid {
    /** The LoID in fullname format, e.g. "t2_a1b2c3". */
    1: string id;
    /** When the LoID cookie was created, in epoch milliseconds. */
    2: i64 created_ms;
}

/** The session cookie of the original request. */
struct Session {
    1: string id;
}

/** The device the original request came from. */
struct Device {
    1: string id;
}

/** The service that first received the original request. */
struct OriginService {
    1: string name;
}

/** Where the original request came from. */
struct Geolocation {
    /** Two-letter ISO 3166-1 country code, upper case. */
    1: string country_code;
}

/** A human-readable identifier of the original request. */
struct RequestId {
    1: string readable_id;
}

/** The edge request context: what the edge service knew about a request. */
struct Request {
    1: Loid loid;
    2: Session session;
    3: AuthenticationToken authentication_token;
    4: Device device;
    5: OriginService origin_service;
    6: Geolocation geolocation;
    7: optional RequestId request_id;
}

/** The base service every Baseplate service extends. */
service BaseplateService {
    /** Return whether the service is healthy and able to serve requests.

    Checked by `baseplate-healthcheck` and by load balancers.
    */
    bool is_healthy(),
}
