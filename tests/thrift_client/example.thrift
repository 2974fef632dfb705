// A small service for the Thrift client tests: the tests compile it with the
// thrift compiler at session start.

namespace py thrift_client_example

exception Oops {
    1: string reason
}

service ExampleService {
    // Returns its argument.
    string echo(1: string message),

    // Sleeps on the server for the given number of seconds.
    void sleep(1: double seconds),

    // Raises the declared exception.
    void fail_declared(1: string reason) throws (1: Oops oops),

    // Raises an undeclared error in the handler: the client gets a
    // TApplicationException.
    void fail_undeclared(),

    // Drops the connection without replying for the first `times` calls
    // made with this key, then returns the number of calls so far.
    i32 drop_connection(1: string key, 2: i32 times),
}
