import Type from 'typebox'
import { MessageId, RoomId } from '../../domain/schemas.ts'

/** The `roomId` field of `POST /api/uploads`. */
export const UploadFields = Type.Object({ roomId: RoomId })

export const AttachmentParams = Type.Object({ id: MessageId })

/** `?room=<roomId>`: the attachment's room, as the URL the server hands out names it (D121). */
export const AttachmentQuery = Type.Object({ room: Type.Optional(RoomId) })
