import Type from 'typebox'
import { RoomId } from '../../domain/schemas.ts'

export const CreateRoomBody = Type.Object({
  id: Type.Optional(RoomId),
  name: Type.String({ minLength: 1, maxLength: 100 }),
  private: Type.Optional(Type.Boolean()),
  members: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 500 })),
})

export const RoomParams = Type.Object({ id: RoomId })

export const HistoryQuery = Type.Object({
  before: Type.Optional(Type.Integer({ minimum: 1 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
})
